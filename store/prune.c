/* prune.c: the retention policy (see lifecycle.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "lifecycle.h"
#include "rp.h"
#include "util.h"

const char *const vbs_keep_rule_names[VBS_KEEP_RULES] = {
    "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly",
};

#define KEY_LEN 24

enum { UNMARKED, KEEP, REMOVE, SHELTERED };

/* The period of time t for rule (UTC; ISO 8601 weeks). keep-last: every point its own. */
static void period_key(int rule, int64_t t, size_t idx, char key[KEY_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;
	size_t w = 0;

	if (rule != VBS_KEEP_LAST && gmtime_r(&tt, &tm)) {
		switch (rule) {
		case VBS_KEEP_HOURLY:
			w = strftime(key, KEY_LEN, "%Y-%m-%dT%H", &tm);
			break;
		case VBS_KEEP_DAILY:
			w = strftime(key, KEY_LEN, "%Y-%m-%d", &tm);
			break;
		case VBS_KEEP_WEEKLY:
			w = strftime(key, KEY_LEN, "%G-W%V", &tm);
			break;
		case VBS_KEEP_MONTHLY:
			w = strftime(key, KEY_LEN, "%Y-%m", &tm);
			break;
		default:
			w = strftime(key, KEY_LEN, "%Y", &tm);
			break;
		}
	}
	if (w == 0)
		snprintf(key, KEY_LEN, "#%zu", idx);
}

static int key_in(char (*set)[KEY_LEN], size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(set[i], key) == 0)
			return 1;
	return 0;
}

struct order {
	const vbs_prune_point *p;
	size_t idx;
};

/* Newest first; equal times: the later in the input (ids sort by time) first. */
static int cmp_newest(const void *a, const void *b)
{
	const struct order *x = a, *y = b;

	if (x->p->time != y->p->time)
		return x->p->time > y->p->time ? -1 : 1;
	return x->idx > y->idx ? -1 : x->idx < y->idx;
}

int vbs_prune_plan(vbs_prune_point *pts, size_t n, const vbs_prune_policy *policy, int64_t now)
{
	struct order *ord = NULL;
	uint8_t *mark = NULL;
	char(*already)[KEY_LEN] = NULL, (*include)[KEY_LEN] = NULL;
	int any = 0, r = 0;

	for (int k = 0; k < VBS_KEEP_RULES; k++)
		any |= policy->keep[k] > 0;
	if (!any)
		return -EINVAL;
	if (n == 0)
		return 0;
	ord = calloc(n, sizeof(*ord));
	mark = calloc(n, 1);
	already = calloc(n, KEY_LEN);
	include = calloc(n, KEY_LEN);
	if (!ord || !mark || !already || !include) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ord[i] = (struct order){&pts[i], i};
		pts[i].keep = pts[i].newest = pts[i].retained = 0;
		pts[i].rule = -1;
	}
	qsort(ord, n, sizeof(*ord), cmp_newest);
	/* Sheltered points are kept and take no place in the rules. */
	for (size_t i = 0; i < n; i++) {
		vbs_prune_point *p = &pts[ord[i].idx];
		p->retained = p->retain_until > now;
		if (p->is_protected || p->retained)
			mark[i] = SHELTERED;
	}
	pts[ord[0].idx].newest = 1;
	for (int rule = 0; rule < VBS_KEEP_RULES; rule++) {
		size_t nalready = 0, ninclude = 0;
		char key[KEY_LEN];

		if (!policy->keep[rule])
			continue;
		/* Periods an earlier rule already covers are skipped and not counted. */
		for (size_t i = 0; i < n; i++) {
			if (mark[i] != KEEP)
				continue;
			period_key(rule, pts[ord[i].idx].time, i, key);
			if (!key_in(already, nalready, key))
				memcpy(already[nalready++], key, KEY_LEN);
		}
		for (size_t i = 0; i < n; i++) {
			if (mark[i] != UNMARKED)
				continue;
			period_key(rule, pts[ord[i].idx].time, i, key);
			if (key_in(already, nalready, key))
				continue;
			if (key_in(include, ninclude, key)) {
				mark[i] = REMOVE; /* an older point of a period already kept */
				continue;
			}
			if (ninclude >= policy->keep[rule])
				break;
			memcpy(include[ninclude++], key, KEY_LEN);
			mark[i] = KEEP;
			pts[ord[i].idx].rule = rule;
		}
	}
	for (size_t i = 0; i < n; i++) {
		vbs_prune_point *p = &pts[ord[i].idx];
		p->keep = mark[i] == KEEP || mark[i] == SHELTERED || p->newest;
	}
out:
	free(ord);
	free(mark);
	free(already);
	free(include);
	return r;
}

void vbs_prune_reasons(const vbs_prune_point *p, char *buf, size_t len)
{
	size_t off = 0;
	char when[21];

#define ADD(...)                                                                                   \
	do {                                                                                       \
		int w_ = snprintf(buf + off, len - off, "%s", off ? ", " : "");                    \
		if (w_ > 0 && (size_t)w_ < len - off)                                              \
			off += (size_t)w_;                                                         \
		w_ = snprintf(buf + off, len - off, __VA_ARGS__);                                  \
		if (w_ > 0 && (size_t)w_ < len - off)                                              \
			off += (size_t)w_;                                                         \
	} while (0)

	if (len == 0)
		return;
	buf[0] = '\0';
	if (!p->keep)
		return;
	if (p->rule >= 0 && p->rule < VBS_KEEP_RULES)
		ADD("%s", vbs_keep_rule_names[p->rule]);
	if (p->is_protected)
		ADD("protected");
	if (p->retained) {
		vbu_format_time(p->retain_until, when);
		when[10] = '\0';
		ADD("retain-until %s", when);
	}
	if (p->newest && off == 0)
		ADD("newest");
#undef ADD
}

int vbs_prune(vbs_vault *v, const char *vm, const vbs_prune_policy *policy, int dry_run,
	      int64_t now, vbs_prune_result **ret, size_t *ret_n, uint64_t *ret_deleted)
{
	vbs_rp **list = NULL;
	vbs_prune_result *res = NULL;
	vbs_prune_point *pts = NULL;
	uint64_t deleted = 0;
	size_t n = 0;
	int r;

	vbs_clear_err();
	if (!now)
		now = vbu_now_ns() / 1000000000;
	r = vbs_rp_list(v, vm, &list, &n);
	if (r < 0)
		return r;
	if (n == 0) {
		r = vbs_fail(-ENOENT, "no VM '%s' in vault '%s'", vm, vbs_vault_path(v));
		goto out;
	}
	res = calloc(n, sizeof(*res));
	pts = calloc(n, sizeof(*pts));
	if (!res || !pts) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		pts[i].time = list[i]->created_ns / 1000000000;
		pts[i].retain_until = list[i]->retain_until;
		r = vbs_rp_protected(v, list[i]->serial, NULL);
		if (r < 0)
			goto out;
		pts[i].is_protected = r;
	}
	r = vbs_prune_plan(pts, n, policy, now);
	if (r < 0) {
		r = vbs_fail(r, r == -EINVAL ? "prune needs at least one rule" : "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(res[i].id, sizeof(res[i].id), "%s", list[i]->id);
		res[i].p = pts[i];
		if (dry_run || pts[i].keep)
			continue;
		/* Never forced: the delete itself refuses protected, retained and newest points
		 * again, in its own transaction, whatever changed since the plan. */
		r = vbs_rp_delete(v, vm, list[i]->id, 0, now);
		if (r == -ENOENT) {
			vbs_clear_err();
			continue;
		}
		if (r < 0)
			goto out;
		res[i].deleted = 1;
		deleted++;
	}
	*ret = res;
	*ret_n = n;
	if (ret_deleted)
		*ret_deleted = deleted;
	res = NULL;
	r = 0;
out:
	vbs_rp_list_free(list, n);
	free(res);
	free(pts);
	return r;
}
