/* lifecycle.h: protecting, deleting and pruning recovery points.
 *
 * Protection is a flag kept beside a point (database protect: u64 serial -> i64 time it was
 * set, seconds), not in its record: the record and the point's files in the mount never change.
 *
 * Deleting a point P (serial s) is one write transaction: readers see the vault before or
 * after it, never between. The index is versioned (index.h), so the point after P in each of
 * its disks' lineages may inherit entries from P: for each entry (lineage, n, s) of P, when the
 * next newer point s2 of the lineage has no entry of its own for n (none with serial in
 * (s, s2]), the entry moves to (lineage, n, s2); otherwise it goes. So every other point reads
 * exactly the bytes it read before. When P is its lineage's head, the head becomes the previous
 * point of the lineage, or the lineage goes when it has none; a next ingest then continues from
 * the VM's new latest point as usual. P's record, name and protection go too, and the VM's
 * record when P was its last point. Chunks are not freed: that is gc's work (gc.h).
 *
 * Refusals (-EPERM, message says why): a protected point (always: unprotect it first); a point
 * whose retain-until date has not passed, and the newest point of its VM (both unless
 * VBS_DELETE_FORCE).
 *
 * Errors: -ENOENT no such VM or point, -EPERM refused, -EBADMSG damaged records, else as
 * vault.h. Every function runs its own transactions.
 */
#ifndef VMBAK_LIFECYCLE_H
#define VMBAK_LIFECYCLE_H

#include <stddef.h>
#include <stdint.h>

#include "rp.h"
#include "vault.h"

/* Records in the point's record that a verify found it damaged (at when, seconds), unless an
 * earlier time is recorded already. The next --qemu or --libvirt point of its VM then reads
 * every disk in full instead of building on it. */
int vbs_rp_mark_damaged(vbs_vault *v, const char *vm, const char *id, int64_t when);

/* Sets (on = 1) or clears protection; idempotent. */
int vbs_rp_protect(vbs_vault *v, const char *vm, const char *id, int on);
/* 1 when the point with this serial is protected, 0 when not; *ret_since its time (s). */
int vbs_rp_protected(vbs_vault *v, uint64_t serial, int64_t *ret_since);

#define VBS_DELETE_FORCE 1u /* also the newest point, and points under retain-until */
/* now: seconds since the epoch for the retain-until check (0: the clock). */
int vbs_rp_delete(vbs_vault *v, const char *vm, const char *id, unsigned flags, int64_t now);

/* ---- prune ---- */

/* Rules in the order they apply; 0: rule not used. */
enum {
	VBS_KEEP_LAST,
	VBS_KEEP_HOURLY,
	VBS_KEEP_DAILY,
	VBS_KEEP_WEEKLY,
	VBS_KEEP_MONTHLY,
	VBS_KEEP_YEARLY,
	VBS_KEEP_RULES,
};
extern const char *const vbs_keep_rule_names[VBS_KEEP_RULES]; /* "keep-last", ... */

typedef struct vbs_prune_policy {
	unsigned keep[VBS_KEEP_RULES];
} vbs_prune_policy;

/* One point as the policy sees it. */
typedef struct vbs_prune_point {
	int64_t time;	      /* creation time, seconds since the epoch (UTC) */
	int64_t retain_until; /* 0: none */
	int is_protected;
	/* out: */
	int keep;
	int rule;     /* VBS_KEEP_* that keeps it, or -1 */
	int newest;   /* kept as the VM's newest point */
	int retained; /* kept by retain-until */
} vbs_prune_point;

/* The policy, as in Proxmox Backup Server and borg: points are taken newest first;
 * keep-last keeps the N newest; each other rule keeps the newest point of each of the last N
 * periods (UTC hours, days, ISO weeks, months, years) that have points, counting only periods
 * not already covered by a point an earlier rule kept, and going only to points older than
 * those. Protected points and points under retain-until (later than now) are kept and take
 * no place in the rules; the newest point is always kept. pts needs no order; each gets keep,
 * rule, newest, retained. -EINVAL when no rule has N > 0. */
int vbs_prune_plan(vbs_prune_point *pts, size_t n, const vbs_prune_policy *policy, int64_t now);

/* "keep-daily", "protected", "retain-until 2027-01-01", "newest": the reasons a point is
 * kept, comma-separated, into buf; "" when pruned. */
void vbs_prune_reasons(const vbs_prune_point *p, char *buf, size_t len);

typedef struct vbs_prune_result {
	char id[VBS_RP_ID_MAX];
	vbs_prune_point p;
	int deleted; /* 1 when deleted (not with dry_run) */
} vbs_prune_result;

/* Applies policy to every point of vm (dry_run: decides only). *ret: one result per point,
 * oldest first (free()). On a failure part-way, the points deleted so far stay deleted;
 * each deletion is whole. now: 0 for the clock. */
int vbs_prune(vbs_vault *v, const char *vm, const vbs_prune_policy *policy, int dry_run,
	      int64_t now, vbs_prune_result **ret, size_t *ret_n, uint64_t *ret_deleted);

#endif
