/* unit.h: the tiny harness of the C unit tests.
 *
 * CHECK(cond) records a failure (file:line and the expression on stderr) and goes on, so one
 * run shows every broken case. CHECK_EQ_INT/CHECK_EQ_MEM also print what they got. A test
 * file defines its cases as functions, calls them from main() with RUN(name) and ends main()
 * with `return unit_finish();` (1 on any failure, else 0). A case that cannot run here calls
 * unit_skip(reason); a program whose cases all skipped returns 77.
 */
#ifndef VMBAK_UNIT_H
#define VMBAK_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failures;
static int unit_checks;
static int unit_cases;
static int unit_skipped;

static inline void unit_fail(const char *file, int line, const char *what)
{
	unit_failures++;
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
}

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		unit_checks++;                                                                     \
		if (!(cond))                                                                       \
			unit_fail(__FILE__, __LINE__, #cond);                                      \
	} while (0)

/* Integers compared as intmax_t (errno codes, lengths). */
#define CHECK_EQ_INT(got, want)                                                                    \
	do {                                                                                       \
		intmax_t unit_g_ = (intmax_t)(got), unit_w_ = (intmax_t)(want);                    \
		unit_checks++;                                                                     \
		if (unit_g_ != unit_w_) {                                                          \
			unit_fail(__FILE__, __LINE__, #got " == " #want);                          \
			fprintf(stderr, "    got %jd, want %jd\n", unit_g_, unit_w_);              \
		}                                                                                  \
	} while (0)

#define CHECK_EQ_MEM(got, want, len)                                                               \
	do {                                                                                       \
		unit_checks++;                                                                     \
		if (memcmp((got), (want), (len)) != 0)                                             \
			unit_fail(__FILE__, __LINE__, "memcmp(" #got ", " #want ") == 0");         \
	} while (0)

#define CHECK_EQ_STR(got, want)                                                                    \
	do {                                                                                       \
		const char *unit_g_ = (got), *unit_w_ = (want);                                    \
		unit_checks++;                                                                     \
		if (!unit_g_ || strcmp(unit_g_, unit_w_) != 0) {                                   \
			unit_fail(__FILE__, __LINE__, #got " == " #want);                          \
			fprintf(stderr, "    got \"%s\", want \"%s\"\n",                           \
				unit_g_ ? unit_g_ : "(null)", unit_w_);                            \
		}                                                                                  \
	} while (0)

/* Runs one case and says which one failed. */
#define RUN(fn)                                                                                    \
	do {                                                                                       \
		int unit_before_ = unit_failures;                                                  \
		unit_cases++;                                                                      \
		fn();                                                                              \
		if (unit_failures != unit_before_)                                                 \
			fprintf(stderr, "FAIL %s\n", #fn);                                         \
	} while (0)

static inline void unit_skip(const char *why)
{
	unit_skipped++;
	fprintf(stderr, "skip: %s\n", why);
}

/* Fills buf with hex-decoded bytes of the literal s (for test vectors); aborts on bad hex. */
static inline size_t unit_unhex(const char *s, uint8_t *buf, size_t cap)
{
	size_t n = strlen(s) / 2, i;

	if (strlen(s) % 2 || n > cap) {
		fprintf(stderr, "bad test vector\n");
		abort();
	}
	for (i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1) {
			fprintf(stderr, "bad test vector\n");
			abort();
		}
		buf[i] = (uint8_t)v;
	}
	return n;
}

static inline int unit_finish(void)
{
	fprintf(stderr, "%d checks, %d failed, %d cases, %d skipped\n", unit_checks, unit_failures,
		unit_cases, unit_skipped);
	if (unit_failures)
		return 1;
	if (unit_cases > 0 && unit_skipped == unit_cases)
		return 77;
	return 0;
}

#endif
