/* prune_test.c: the retention policy (vbs_prune_plan) on synthetic times. */
#include <errno.h>
#include <time.h>

#include "lifecycle.h"
#include "unit.h"

/* Seconds for a UTC date and time. */
static int64_t at(int y, int mo, int d, int h, int mi)
{
	struct tm tm = {0};

	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	return (int64_t)timegm(&tm);
}

static const int64_t NOW = 1893456000; /* 2030-01-01 */

/* Keeps as a string of 'k' and '-', oldest first. */
static void plan(vbs_prune_point *p, size_t n, vbs_prune_policy pol, char *out)
{
	CHECK_EQ_INT(vbs_prune_plan(p, n, &pol, NOW), 0);
	for (size_t i = 0; i < n; i++)
		out[i] = p[i].keep ? 'k' : '-';
	out[n] = '\0';
}

static void test_no_rule(void)
{
	vbs_prune_point p[1] = {{.time = 1}};
	vbs_prune_policy pol = {{0}};

	CHECK_EQ_INT(vbs_prune_plan(p, 1, &pol, NOW), -EINVAL);
}

static void test_keep_last(void)
{
	vbs_prune_point p[5];
	char s[8];

	for (int i = 0; i < 5; i++)
		p[i] = (vbs_prune_point){.time = at(2026, 1, 1, i, 0)};
	plan(p, 5, (vbs_prune_policy){{[VBS_KEEP_LAST] = 2}}, s);
	CHECK_EQ_STR(s, "---kk");
	CHECK_EQ_INT(p[4].rule, VBS_KEEP_LAST);
	CHECK_EQ_INT(p[4].newest, 1);
	plan(p, 5, (vbs_prune_policy){{[VBS_KEEP_LAST] = 9}}, s);
	CHECK_EQ_STR(s, "kkkkk");
}

/* Several points a day: keep-daily keeps the newest of each of the last N days that have
 * points (days without points do not count). */
static void test_daily(void)
{
	vbs_prune_point p[7] = {
	    {.time = at(2026, 3, 1, 8, 0)},  {.time = at(2026, 3, 1, 20, 0)},
	    {.time = at(2026, 3, 2, 8, 0)},  {.time = at(2026, 3, 5, 8, 0)},
	    {.time = at(2026, 3, 5, 12, 0)}, {.time = at(2026, 3, 5, 23, 59)},
	    {.time = at(2026, 3, 6, 0, 1)},
	};
	char s[8];

	plan(p, 7, (vbs_prune_policy){{[VBS_KEEP_DAILY] = 3}}, s);
	CHECK_EQ_STR(s, "--k--kk");
	plan(p, 7, (vbs_prune_policy){{[VBS_KEEP_DAILY] = 10}}, s);
	CHECK_EQ_STR(s, "-kk--kk");
	plan(p, 7, (vbs_prune_policy){{[VBS_KEEP_HOURLY] = 4}}, s);
	CHECK_EQ_STR(s, "---kkkk");
}

/* PBS: a later rule skips periods an earlier rule covers and looks only at older points. */
static void test_combined(void)
{
	/* One point a day from Monday 2026-01-05 (ISO week 2) for 21 days. */
	vbs_prune_point p[21];
	char s[22];

	for (int i = 0; i < 21; i++)
		p[i] = (vbs_prune_point){.time = at(2026, 1, 5 + i, 12, 0)};
	/* keep-daily 3 keeps the last three days (Fri-Sun of week 4); keep-weekly 2 then skips
	 * week 4 (covered) and keeps the Sundays of weeks 3 and 2. */
	plan(p, 21, (vbs_prune_policy){{[VBS_KEEP_DAILY] = 3, [VBS_KEEP_WEEKLY] = 2}}, s);
	CHECK_EQ_STR(s, "------k------k----kkk");
	CHECK_EQ_INT(p[13].rule, VBS_KEEP_WEEKLY);
	CHECK_EQ_INT(p[20].rule, VBS_KEEP_DAILY);
	/* keep-last 1 and keep-monthly 2: January has only one month: the newest (kept by
	 * keep-last) covers it, so monthly finds no older month. */
	plan(p, 21, (vbs_prune_policy){{[VBS_KEEP_LAST] = 1, [VBS_KEEP_MONTHLY] = 2}}, s);
	CHECK_EQ_STR(s, "--------------------k");
}

/* ISO weeks: 2026-12-31 (Thursday) and 2027-01-01 (Friday) are both in week 2026-W53. */
static void test_iso_week(void)
{
	vbs_prune_point p[3] = {
	    {.time = at(2026, 12, 27, 12, 0)}, /* Sunday, 2026-W52 */
	    {.time = at(2026, 12, 31, 12, 0)},
	    {.time = at(2027, 1, 1, 12, 0)},
	};
	char s[4];

	plan(p, 3, (vbs_prune_policy){{[VBS_KEEP_WEEKLY] = 5}}, s);
	CHECK_EQ_STR(s, "k-k");
	plan(p, 3, (vbs_prune_policy){{[VBS_KEEP_YEARLY] = 5}}, s);
	CHECK_EQ_STR(s, "-kk");
}

/* Protected and retained points are kept and take no place; the newest is always kept. */
static void test_sheltered(void)
{
	vbs_prune_point p[5];
	char s[6], why[128];

	for (int i = 0; i < 5; i++)
		p[i] = (vbs_prune_point){.time = at(2026, 2, 1 + i, 12, 0)};
	p[1].is_protected = 1;
	p[2].retain_until = at(2031, 1, 1, 0, 0);
	p[3].retain_until = at(2027, 1, 1, 0, 0); /* passed at NOW: no shelter */
	plan(p, 5, (vbs_prune_policy){{[VBS_KEEP_LAST] = 2}}, s);
	CHECK_EQ_STR(s, "-kkkk");
	vbs_prune_reasons(&p[1], why, sizeof(why));
	CHECK_EQ_STR(why, "protected");
	vbs_prune_reasons(&p[2], why, sizeof(why));
	CHECK_EQ_STR(why, "retain-until 2031-01-01");
	vbs_prune_reasons(&p[0], why, sizeof(why));
	CHECK_EQ_STR(why, "");
	/* The newest protected: still the newest, kept for both. */
	p[4].is_protected = 1;
	plan(p, 5, (vbs_prune_policy){{[VBS_KEEP_LAST] = 1}}, s);
	CHECK_EQ_STR(s, "-kkkk");
	vbs_prune_reasons(&p[4], why, sizeof(why));
	CHECK_EQ_STR(why, "protected");
	CHECK_EQ_INT(p[4].newest, 1);
}

/* Equal times (ids "...Z", "...Z-01"): the later in the input is the newer. */
static void test_same_second(void)
{
	vbs_prune_point p[3] = {{.time = 100}, {.time = 100}, {.time = 100}};
	char s[4];

	plan(p, 3, (vbs_prune_policy){{[VBS_KEEP_LAST] = 1}}, s);
	CHECK_EQ_STR(s, "--k");
	plan(p, 3, (vbs_prune_policy){{[VBS_KEEP_DAILY] = 1}}, s);
	CHECK_EQ_STR(s, "--k");
}

int main(void)
{
	RUN(test_no_rule);
	RUN(test_keep_last);
	RUN(test_daily);
	RUN(test_combined);
	RUN(test_iso_week);
	RUN(test_sheltered);
	RUN(test_same_second);
	return unit_finish();
}
