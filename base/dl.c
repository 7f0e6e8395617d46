/* dl.c: the loader of the libraries only some paths need (dl.h). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dl.h"
#include "util.h"

/* One lock for every library: loads are rare, and a second caller waits for the first. */
static pthread_mutex_t dl_lock = PTHREAD_MUTEX_INITIALIZER;

static void clear_slots(va_list ap)
{
	void **slot;

	while ((slot = va_arg(ap, void **))) {
		*slot = NULL;
		(void)va_arg(ap, const char *);
	}
}

int vbu_dlopen_many(void **handle, const char *soname, const char *what, ...)
{
	void *dl, **slot;
	const char *name, *why;
	va_list ap;
	int r = 0;

	if (__atomic_load_n(handle, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&dl_lock);
	if (*handle)
		goto out;
	dl = dlopen(soname, RTLD_NOW | RTLD_NODELETE);
	if (!dl) {
		why = dlerror();
		r = vbu_fail(-ELIBACC, "cannot load %s (needed for %s): %s", soname, what,
			     why ? why : "unknown error");
		va_start(ap, what);
		clear_slots(ap);
		va_end(ap);
		goto out;
	}
	va_start(ap, what);
	while ((slot = va_arg(ap, void **))) {
		name = va_arg(ap, const char *);
		dlerror();
		*slot = dlsym(dl, name);
		if (!*slot) {
			why = dlerror();
			r = vbu_fail(-ELIBACC, "cannot load %s (needed for %s): %s", soname, what,
				     why ? why : name);
			break;
		}
	}
	va_end(ap);
	if (r < 0) {
		va_start(ap, what);
		clear_slots(ap);
		va_end(ap);
		/* RTLD_NODELETE: this only drops our reference; a later call opens it again. */
		dlclose(dl);
		goto out;
	}
	/* The slots are written before the handle is published: a caller that sees the handle
	 * sees them. */
	__atomic_store_n(handle, dl, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&dl_lock);
	return r;
}
