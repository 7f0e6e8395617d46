/* dl_test.c: base/dl.c, the loader of libraries only some paths need: symbols resolved and
 * typed from the header, a library that cannot be opened and a symbol it lacks (one message,
 * -ELIBACC, every slot NULL, tried again by the next call), a loaded library not loaded again,
 * and concurrent first calls. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "dl.h"
#include "unit.h"
#include "util.h"

/* libm: glibc's, on every system, with a header and symbols that are easy to check. */
static VBU_DLSYM_PROTOTYPE(sqrt);
static VBU_DLSYM_PROTOTYPE(ldexp);

static void loads_and_resolves(void)
{
	static void *h;

	CHECK_EQ_INT(vbu_dlopen_many(&h, "libm.so.6", "tests", VBU_DLSYM_ARG(sqrt),
				     VBU_DLSYM_ARG(ldexp), NULL),
		     0);
	CHECK(h != NULL);
	CHECK(sym_sqrt != NULL && sym_ldexp != NULL);
	CHECK_EQ_INT((int)sym_sqrt(1764.0), 42);
	CHECK_EQ_INT((int)sym_ldexp(3.0, 4), 48);
	/* Loaded: a second call does nothing and succeeds. */
	CHECK_EQ_INT(vbu_dlopen_many(&h, "libm.so.6", "tests", VBU_DLSYM_ARG(sqrt), NULL), 0);
}

static void missing_library(void)
{
	static void *h;
	void (*sym_f)(void) = (void (*)(void))loads_and_resolves;

	vbu_clear_err();
	CHECK_EQ_INT(vbu_dlopen_many(&h, "libvmbak-no-such-library.so.0", "a test path",
				     VBU_DLSYM_ARG(f), NULL),
		     -ELIBACC);
	CHECK(h == NULL);
	CHECK(sym_f == NULL);
	CHECK(strncmp(
		  vbu_errmsg(),
		  "cannot load libvmbak-no-such-library.so.0 (needed for a test path): ",
		  strlen("cannot load libvmbak-no-such-library.so.0 (needed for a test path): ")) ==
	      0);
	CHECK(strchr(vbu_errmsg(), '\n') == NULL);
}

static void missing_symbol(void)
{
	static void *h;
	void (*sym_vmbak_no_such_symbol)(void) = NULL;
	double (*sym_first)(double) = NULL;

	/* The first symbol resolves, the second does not: both slots end NULL. */
	CHECK_EQ_INT(vbu_dlopen_many(&h, "libm.so.6", "tests", (void **)&sym_first, "sqrt",
				     VBU_DLSYM_ARG(vmbak_no_such_symbol), NULL),
		     -ELIBACC);
	CHECK(h == NULL);
	CHECK(sym_first == NULL && sym_vmbak_no_such_symbol == NULL);
	CHECK(strncmp(vbu_errmsg(), "cannot load libm.so.6 (needed for tests): ", 42) == 0);
	CHECK(strstr(vbu_errmsg(), "vmbak_no_such_symbol") != NULL);
	/* Tried again by the next call, which now asks for what exists. */
	CHECK_EQ_INT(vbu_dlopen_many(&h, "libm.so.6", "tests", (void **)&sym_first, "sqrt", NULL),
		     0);
	CHECK(h != NULL && sym_first != NULL);
	CHECK_EQ_INT((int)sym_first(81.0), 9);
}

static void *h_shared;
static VBU_DLSYM_PROTOTYPE(floor);

static void *load_thread(void *arg)
{
	int *r = arg;

	*r = vbu_dlopen_many(&h_shared, "libm.so.6", "tests", VBU_DLSYM_ARG(floor), NULL);
	if (*r == 0 && (int)sym_floor(2.5) != 2)
		*r = -EIO;
	return NULL;
}

static void concurrent(void)
{
	pthread_t t[8];
	int r[8];

	for (int i = 0; i < 8; i++)
		CHECK_EQ_INT(pthread_create(&t[i], NULL, load_thread, &r[i]), 0);
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ_INT(r[i], 0);
	}
}

int main(void)
{
	RUN(loads_and_resolves);
	RUN(missing_library);
	RUN(missing_symbol);
	RUN(concurrent);
	return unit_finish();
}
