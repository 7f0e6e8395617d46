/* src_qemu.c: a running QEMU VM's disks at one instant, over QMP and NBD (see src_qemu.h). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src_qemu.h"
#include "json.h"
#include "util.h"

#define QMP_MS 30000		 /* one QMP answer */
#define QMP_LINE_MAX (16u << 20) /* one QMP message */
#define DISKS_MAX VBS_DISKS_MAX

struct qdisk {
	src_qemu_disk pub;
	char node[256];	 /* the device's top node */
	char fleece[64]; /* our overlay node */
	char job[64];	 /* our fleecing job */
	char overlay[PATH_MAX];
	uint64_t size;
	int prev_ok;	 /* the latest point's bitmap is usable: disabled at the instant */
	int prev_exists; /* it exists, usable or not: removed once a new point commits */
	int persist;	 /* the node's format stores bitmaps (qcow2): ours are persistent */
	int next_added;	 /* "+next" exists */
	int fleece_added, job_started, exported;
	vbs_extent *ext;
};

struct src_qemu {
	int fd;
	char *buf;
	size_t blen, bcap;
	char uuid[64];
	char prev_id[VBS_RP_ID_MAX];
	char bm_prev[160], bm_next[160];
	char prefix[32]; /* of our node, job and export names */
	char dir[PATH_MAX], sock[PATH_MAX];
	int server_started;
	char qmp_path[PATH_MAX];
	int began; /* connected once: there may be something to undo */
	size_t n;
	struct qdisk *d;
};

/* The private directory, for the signal hook. */
static char sig_dir[PATH_MAX];
static volatile sig_atomic_t sig_dir_set;

/* ---- QMP ---- */

static int qmp_fail(src_qemu *q, int err, const char *what)
{
	(void)q;
	return vbu_fail(err, "QEMU: %s", what);
}

/* The next message that is not an event, parsed; *ret owned by the caller. */
static int qmp_read(src_qemu *q, json_object **ret)
{
	int64_t deadline = vbu_mono_ns() / 1000000 + QMP_MS;

	for (;;) {
		char *nl = q->blen ? memchr(q->buf, '\n', q->blen) : NULL;

		if (nl) {
			size_t len = (size_t)(nl - q->buf);
			json_tokener *tok = json_tokener_new_ex(64);
			json_object *o = NULL;

			if (!tok)
				return vbu_fail(-ENOMEM, "out of memory");
			o = json_tokener_parse_ex(tok, q->buf, (int)len);
			if (json_tokener_get_error(tok) != json_tokener_success)
				o = NULL;
			json_tokener_free(tok);
			memmove(q->buf, nl + 1, q->blen - len - 1);
			q->blen -= len + 1;
			if (!o || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				return vbu_fail(-EPROTO,
						"not a QMP socket: it sent something that is not "
						"a JSON object");
			}
			if (json_object_object_get_ex(o, "event", NULL)) {
				json_object_put(o);
				continue;
			}
			*ret = o;
			return 0;
		}
		if (q->blen == q->bcap) {
			size_t cap = q->bcap ? q->bcap * 2 : 65536;
			char *b;

			if (cap > QMP_LINE_MAX)
				return vbu_fail(-EPROTO,
						"not a QMP socket: a message over %u bytes",
						QMP_LINE_MAX);
			b = realloc(q->buf, cap);
			if (!b)
				return vbu_fail(-ENOMEM, "out of memory");
			q->buf = b;
			q->bcap = cap;
		}
		{
			struct pollfd p = {q->fd, POLLIN, 0};
			int64_t left = deadline - vbu_mono_ns() / 1000000;
			ssize_t got;
			int pr;

			if (left <= 0)
				return vbu_fail(-ETIMEDOUT,
						"QEMU did not answer on its QMP socket for "
						"%d s",
						QMP_MS / 1000);
			pr = poll(&p, 1, (int)left);
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr < 0)
				return vbu_fail(-errno, "QMP socket: %s", vbu_strerror(errno));
			if (pr == 0)
				continue;
			got = read(q->fd, q->buf + q->blen, q->bcap - q->blen);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0)
				return vbu_fail(-errno, "QMP socket: %s", vbu_strerror(errno));
			if (got == 0)
				return vbu_fail(-ECONNRESET, "QEMU closed its QMP socket");
			q->blen += (size_t)got;
		}
	}
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Runs cmd with args (consumed, may be NULL). *ret (may be NULL): the "return" value, owned
 * by the caller. A QMP error fails with QEMU's description. */
static int qmp_exec(src_qemu *q, const char *cmd, json_object *args, json_object **ret)
{
	json_object *m = json_object_new_object(), *a = NULL, *r, *e;
	const char *text;
	int rc;

	if (!m) {
		json_object_put(args);
		return vbu_fail(-ENOMEM, "out of memory");
	}
	json_object_object_add(m, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(m, "arguments", args);
	text = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
	rc = write_all(q->fd, text, strlen(text));
	if (rc == 0)
		rc = write_all(q->fd, "\n", 1);
	json_object_put(m);
	if (rc < 0)
		return vbu_fail(rc, "QMP socket: %s", vbu_strerror(-rc));
	if ((rc = qmp_read(q, &a)) < 0)
		return rc;
	if (json_object_object_get_ex(a, "error", &e)) {
		const char *desc = vbu_json_str(e, "desc");
		rc = vbu_fail(-EIO, "QEMU refused %s: %s", cmd, desc ? desc : "no reason given");
		json_object_put(a);
		return rc;
	}
	if (!json_object_object_get_ex(a, "return", &r)) {
		json_object_put(a);
		return qmp_fail(q, -EPROTO, "an answer without \"return\"");
	}
	if (ret)
		*ret = json_object_get(r);
	json_object_put(a);
	return 0;
}

static int qmp_connect(src_qemu *q, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	json_object *g = NULL, *v;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return vbu_fail(-ENAMETOOLONG, "QMP socket path '%s' is too long", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0)
		return vbu_fail(-errno, "cannot connect to QMP socket '%s': %s", path,
				vbu_strerror(errno));
	if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return vbu_fail(-errno, "cannot connect to QMP socket '%s': %s", path,
				vbu_strerror(errno));
	r = qmp_read(q, &g);
	if (r == -EPROTO || r == -ECONNRESET || r == -ETIMEDOUT)
		return vbu_fail(-EPROTO, "'%s' is not a QMP socket: %s", path, vbu_errmsg());
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(g, "QMP", &v) || !json_object_is_type(v, json_type_object)) {
		json_object_put(g);
		return vbu_fail(-EPROTO, "'%s' is not a QMP socket: no QMP greeting", path);
	}
	json_object_put(g);
	r = qmp_exec(q, "qmp_capabilities", NULL, NULL);
	if (r < 0)
		return vbu_fail(-EPROTO, "'%s' is not a QMP socket: %s", path, vbu_errmsg());
	return 0;
}

/* {"type": type, "data": {...}} for a transaction. */
static json_object *action(const char *type, json_object *data)
{
	json_object *a = json_object_new_object();

	json_object_object_add(a, "type", json_object_new_string(type));
	json_object_object_add(a, "data", data);
	return a;
}

static json_object *bitmap_args(const char *node, const char *name)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "node", json_object_new_string(node));
	json_object_object_add(o, "name", json_object_new_string(name));
	return o;
}

static json_object *merge_args(const char *node, const char *target, const char *from)
{
	json_object *o = json_object_new_object(), *l = json_object_new_array();

	json_object_array_add(l, json_object_new_string(from));
	json_object_object_add(o, "node", json_object_new_string(node));
	json_object_object_add(o, "target", json_object_new_string(target));
	json_object_object_add(o, "bitmaps", l);
	return o;
}

/* Persistent where the format stores bitmaps (qcow2); elsewhere (raw) a bitmap lives as long
 * as the QEMU process, and the first point after a restart is full. */
static json_object *persistent(json_object *o, int yes)
{
	json_object_object_add(o, "persistent", json_object_new_boolean(yes));
	return o;
}

/* ---- the disks ---- */

/* "vd0" of "/machine/peripheral/vd0/virtio-backend"; else the qdev path as it is. */
static void qdev_short(const char *qdev, char *out, size_t cap)
{
	const char *p = "/machine/peripheral/";
	const char *s = strncmp(qdev, p, strlen(p)) == 0 ? qdev + strlen(p) : qdev;
	size_t len = strcspn(s, "/");

	if (s == qdev)
		len = strlen(s);
	snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), s);
}

/* The dirty bitmap named name of an inserted medium (or its BlockInfo): its object. */
static json_object *find_bitmap(json_object *info, json_object *ins, const char *name)
{
	json_object *lists[2] = {NULL, NULL}, *l;

	if (json_object_object_get_ex(ins, "dirty-bitmaps", &l))
		lists[0] = l;
	if (json_object_object_get_ex(info, "dirty-bitmaps", &l))
		lists[1] = l;
	for (int k = 0; k < 2; k++) {
		if (!lists[k] || !json_object_is_type(lists[k], json_type_array))
			continue;
		for (size_t i = 0; i < json_object_array_length(lists[k]); i++) {
			json_object *b = json_object_array_get_idx(lists[k], i);
			const char *n = vbu_json_str(b, "name");
			if (n && strcmp(n, name) == 0)
				return b;
		}
	}
	return NULL;
}

static int jbool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* Our bitmaps of other points, and those of vaults of ours that were dropped, stay out of it:
 * only this vault's "@" bitmaps other than the latest point's are removed. */
static int drop_stale(src_qemu *q, struct qdisk *d, json_object *info, json_object *ins)
{
	json_object *lists[2] = {NULL, NULL}, *l;
	char mine[96];
	int r;

	snprintf(mine, sizeof(mine), "vmbak-%s@", q->uuid);
	if (json_object_object_get_ex(ins, "dirty-bitmaps", &l))
		lists[0] = l;
	else if (json_object_object_get_ex(info, "dirty-bitmaps", &l))
		lists[1] = l;
	for (int k = 0; k < 2; k++) {
		if (!lists[k] || !json_object_is_type(lists[k], json_type_array))
			continue;
		for (size_t i = 0; i < json_object_array_length(lists[k]); i++) {
			const char *n =
			    vbu_json_str(json_object_array_get_idx(lists[k], i), "name");
			if (!n || strncmp(n, mine, strlen(mine)) != 0 || strcmp(n, q->bm_prev) == 0)
				continue;
			r = qmp_exec(q, "block-dirty-bitmap-remove", bitmap_args(d->node, n), NULL);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Decides how disk d is read, from its bitmaps (info: its query-block entry), and recovers
 * the bitmaps a killed ingest left: "+next" merged back into the latest point's. */
static int plan_bitmaps(src_qemu *q, struct qdisk *d, json_object *info, json_object *ins,
			const vbs_rp *prev)
{
	json_object *bp = find_bitmap(info, ins, q->bm_prev);
	json_object *bn = find_bitmap(info, ins, q->bm_next);
	const vbs_disk *pd = NULL;
	int r;

	for (size_t i = 0; prev && i < prev->n_disks; i++)
		if (strcmp(prev->disks[i].name, d->pub.name) == 0)
			pd = &prev->disks[i];
	if (bn && bp && !jbool(bp, "recording") && !jbool(bp, "inconsistent") &&
	    !jbool(bp, "busy") && !jbool(bn, "inconsistent")) {
		json_object *acts = json_object_new_array(), *args = json_object_new_object();

		json_object_array_add(acts, action("block-dirty-bitmap-merge",
						   merge_args(d->node, q->bm_prev, q->bm_next)));
		json_object_array_add(
		    acts, action("block-dirty-bitmap-enable", bitmap_args(d->node, q->bm_prev)));
		json_object_array_add(
		    acts, action("block-dirty-bitmap-remove", bitmap_args(d->node, q->bm_next)));
		json_object_object_add(args, "actions", acts);
		if ((r = qmp_exec(q, "transaction", args, NULL)) < 0)
			return r;
		bn = NULL;
		bp = NULL; /* recording again: looked at below as such */
		d->prev_ok = 1;
	} else if (bn) {
		if ((r = qmp_exec(q, "block-dirty-bitmap-remove", bitmap_args(d->node, q->bm_next),
				  NULL)) < 0)
			return r;
	}
	if ((r = drop_stale(q, d, info, ins)) < 0)
		return r;
	d->prev_exists = bp != NULL || d->prev_ok;
	if (d->prev_ok) {
		/* recovered above */
	} else if (!prev) {
		snprintf(d->pub.note, sizeof(d->pub.note), "full: the first point of this VM");
	} else if (!pd) {
		snprintf(d->pub.note, sizeof(d->pub.note), "full: point %s has no disk '%s'",
			 prev->id, d->pub.name);
	} else if (pd->size != d->size) {
		snprintf(d->pub.note, sizeof(d->pub.note), "full: its size changed since point %s",
			 prev->id);
	} else if (!bp) {
		snprintf(d->pub.note, sizeof(d->pub.note),
			 "full: no dirty bitmap of point %s (QEMU was restarted or killed, or the "
			 "disk replaced)",
			 prev->id);
	} else if (jbool(bp, "inconsistent")) {
		snprintf(d->pub.note, sizeof(d->pub.note),
			 "full: the dirty bitmap of point %s is inconsistent", prev->id);
	} else if (!jbool(bp, "recording") || jbool(bp, "busy")) {
		snprintf(d->pub.note, sizeof(d->pub.note),
			 "full: the dirty bitmap of point %s is disabled or busy", prev->id);
	} else {
		d->prev_ok = 1;
	}
	if (d->prev_ok && (!pd || pd->size != d->size)) {
		/* A bitmap of ours for a disk the point does not have as it is: not usable. */
		d->prev_ok = 0;
		snprintf(d->pub.note, sizeof(d->pub.note),
			 "full: point %s has disk '%s' at another "
			 "size or not at all",
			 prev->id, d->pub.name);
	}
	if (d->prev_ok && prev->damaged) {
		/* Changes on top of a point a verify found damaged would carry its damage on. */
		d->prev_ok = 0;
		snprintf(d->pub.note, sizeof(d->pub.note),
			 "full: point %s failed verification", prev->id);
	}
	if (d->prev_ok)
		snprintf(d->pub.note, sizeof(d->pub.note),
			 "incremental: dirty bitmap since point %s", prev->id);
	return 0;
}

/* Fills q->d from query-block: the named disks, or every writable one. */
static int find_disks(src_qemu *q, const char *const *names, const char *const *nodes,
		      size_t n_want, const vbs_rp *prev)
{
	json_object *blocks = NULL;
	size_t nb;
	int r = qmp_exec(q, "query-block", NULL, &blocks);

	if (r < 0)
		return r;
	if (!json_object_is_type(blocks, json_type_array)) {
		json_object_put(blocks);
		return qmp_fail(q, -EPROTO, "query-block did not return a list");
	}
	nb = json_object_array_length(blocks);
	q->d = calloc(n_want ? n_want : nb ? nb : 1, sizeof(*q->d));
	if (!q->d) {
		json_object_put(blocks);
		return vbu_fail(-ENOMEM, "out of memory");
	}
	for (size_t w = 0; w < (n_want ? n_want : nb) && r == 0; w++) {
		json_object *info = NULL, *ins = NULL, *img;
		const char *node = NULL, *dev = NULL, *qdev = NULL;
		char qs[128];
		struct qdisk *d = &q->d[q->n];
		uint64_t size;

		for (size_t i = 0; i < nb; i++) {
			json_object *b = json_object_array_get_idx(blocks, i), *in;
			const char *bn, *bd, *bq;

			if (!n_want && i != w)
				continue;
			if (!json_object_object_get_ex(b, "inserted", &in))
				continue;
			bn = vbu_json_str(in, "node-name");
			bd = vbu_json_str(b, "device");
			bq = vbu_json_str(b, "qdev");
			qdev_short(bq ? bq : "", qs, sizeof(qs));
			if (n_want &&
			    !((bn && strcmp(bn, nodes[w]) == 0) ||
			      (bd && *bd && strcmp(bd, nodes[w]) == 0) ||
			      (bq && strcmp(bq, nodes[w]) == 0) || strcmp(qs, nodes[w]) == 0))
				continue;
			info = b;
			ins = in;
			node = bn;
			dev = bd;
			qdev = bq;
			break;
		}
		if (!info) {
			if (n_want)
				r = vbu_fail(-ENOENT,
					     "QEMU has no disk with node, drive or device '%s'",
					     nodes[w]);
			continue;
		}
		if (jbool(ins, "ro")) {
			if (n_want)
				r = vbu_fail(-EINVAL,
					     "QEMU disk '%s' is read-only: not a disk to back "
					     "up",
					     nodes[w]);
			continue;
		}
		if (!node || !*node || strlen(node) >= sizeof(d->node) ||
		    !json_object_object_get_ex(ins, "image", &img) ||
		    vbu_json_u64(img, "virtual-size", &size) < 0) {
			r = qmp_fail(q, -EPROTO, "query-block gave a disk without a node or size");
			continue;
		}
		if (size == 0)
			continue; /* no medium */
		if (n_want) {
			snprintf(d->pub.name, sizeof(d->pub.name), "%s", names[w]);
		} else {
			const char *nm;

			qdev_short(qdev ? qdev : "", qs, sizeof(qs));
			nm = dev && *dev && vbu_name_valid(dev) ? dev : qs;
			if (strlen(nm) < sizeof(d->pub.name))
				memcpy(d->pub.name, nm, strlen(nm) + 1);
			if (!vbu_name_valid(d->pub.name)) {
				r = vbu_fail(-EINVAL,
					     "cannot name QEMU disk '%s': give it a name "
					     "with --disk NAME=%s",
					     node, node);
				continue;
			}
		}
		for (size_t k = 0; k < q->n; k++)
			if (strcmp(q->d[k].node, node) == 0)
				r = vbu_fail(-EINVAL, "QEMU disk '%s' is named twice", node);
			else if (strcmp(q->d[k].pub.name, d->pub.name) == 0)
				r = vbu_fail(-EINVAL,
					     "two QEMU disks would be named '%s': name them "
					     "with --disk NAME=NODE",
					     d->pub.name);
		if (r < 0)
			continue;
		snprintf(d->node, sizeof(d->node), "%s", node);
		d->size = size;
		d->persist =
		    vbu_json_str(ins, "drv") && strcmp(vbu_json_str(ins, "drv"), "qcow2") == 0;
		snprintf(d->fleece, sizeof(d->fleece), "%s-f%zu", q->prefix, q->n);
		snprintf(d->job, sizeof(d->job), "%s-j%zu", q->prefix, q->n);
		q->n++;
		r = plan_bitmaps(q, d, info, ins, prev);
	}
	json_object_put(blocks);
	if (r == 0 && q->n == 0)
		r = vbu_fail(-ENODEV, "QEMU has no writable disk to back up");
	return r;
}

static int jobs_gone(src_qemu *q);

/* ---- what a killed ingest of this vault left in QEMU ---- */

/* names of the list that start with our prefix */
static int mine(src_qemu *q, json_object *o, const char *key)
{
	const char *n = vbu_json_str(o, key);

	return n && strncmp(n, q->prefix, strlen(q->prefix)) == 0 && n[strlen(q->prefix)] == '-';
}

/* Exports, the NBD server that served them, jobs and fleecing nodes of an ingest of this vault
 * that was killed (their names carry the vault's id): removed, so that this one can start. */
static int clean_leftovers(src_qemu *q)
{
	json_object *l = NULL;
	int r, had_export = 0, had_job = 0;

	if (qmp_exec(q, "query-block-exports", NULL, &l) == 0 &&
	    json_object_is_type(l, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(l); i++) {
			json_object *e = json_object_array_get_idx(l, i), *a;

			if (!mine(q, e, "id"))
				continue;
			a = json_object_new_object();
			json_object_object_add(a, "id",
					       json_object_new_string(vbu_json_str(e, "id")));
			json_object_object_add(a, "mode", json_object_new_string("hard"));
			if ((r = qmp_exec(q, "block-export-del", a, NULL)) < 0) {
				json_object_put(l);
				return r;
			}
			had_export = 1;
		}
	}
	json_object_put(l);
	l = NULL;
	/* Our exports were the server's: it was started by the killed ingest. */
	if (had_export && (r = qmp_exec(q, "nbd-server-stop", NULL, NULL)) < 0)
		return r;
	if (qmp_exec(q, "query-block-jobs", NULL, &l) == 0 &&
	    json_object_is_type(l, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(l); i++) {
			json_object *j = json_object_array_get_idx(l, i), *a;

			if (!mine(q, j, "device"))
				continue;
			a = json_object_new_object();
			json_object_object_add(a, "device",
					       json_object_new_string(vbu_json_str(j, "device")));
			json_object_object_add(a, "force", json_object_new_boolean(1));
			qmp_exec(q, "block-job-cancel", a, NULL);
			had_job = 1;
		}
	}
	json_object_put(l);
	l = NULL;
	for (int k = 0; had_job && k < 500 && !jobs_gone(q); k++)
		usleep(20000);
	if (qmp_exec(q, "query-named-block-nodes", NULL, &l) == 0 &&
	    json_object_is_type(l, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(l); i++) {
			json_object *n = json_object_array_get_idx(l, i), *a;

			if (!mine(q, n, "node-name"))
				continue;
			a = json_object_new_object();
			json_object_object_add(
			    a, "node-name", json_object_new_string(vbu_json_str(n, "node-name")));
			if ((r = qmp_exec(q, "blockdev-del", a, NULL)) < 0) {
				json_object_put(l);
				return r;
			}
		}
	}
	json_object_put(l);
	return 0;
}

/* ---- the instant ---- */

/* qemu-img create -f qcow2 PATH SIZE, under a time limit. */
static int make_overlay(const char *path, uint64_t size)
{
	char sz[32];
	char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", (char *)path, sz, NULL};
	int64_t deadline = vbu_mono_ns() / 1000000 + QMP_MS;
	pid_t pid;
	int st;

	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	pid = fork();
	if (pid < 0)
		return vbu_fail(-errno, "cannot run qemu-img: %s", vbu_strerror(errno));
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		execvp("qemu-img", argv);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (vbu_mono_ns() / 1000000 > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return vbu_fail(-ETIMEDOUT, "qemu-img create '%s' did not finish", path);
		}
		usleep(10000);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return vbu_fail(-EIO, "cannot create the fleecing overlay '%s' with qemu-img",
				path);
	return 0;
}

static int add_fleece(src_qemu *q, struct qdisk *d, size_t i)
{
	json_object *a = json_object_new_object(), *f = json_object_new_object();
	int r;

	snprintf(d->overlay, sizeof(d->overlay), "%.*s/fleece%zu.qcow2", PATH_MAX - 64, q->dir, i);
	if ((r = make_overlay(d->overlay, d->size)) < 0) {
		json_object_put(a);
		json_object_put(f);
		return r;
	}
	json_object_object_add(f, "driver", json_object_new_string("file"));
	json_object_object_add(f, "filename", json_object_new_string(d->overlay));
	json_object_object_add(a, "driver", json_object_new_string("qcow2"));
	json_object_object_add(a, "node-name", json_object_new_string(d->fleece));
	json_object_object_add(a, "file", f);
	json_object_object_add(a, "backing", json_object_new_string(d->node));
	r = qmp_exec(q, "blockdev-add", a, NULL);
	if (r == 0)
		d->fleece_added = 1;
	return r;
}

/* Every disk at one instant: "+next" added, the latest point's bitmap disabled, fleecing
 * started. */
static int freeze(src_qemu *q)
{
	json_object *acts = json_object_new_array(), *args = json_object_new_object();
	int r;

	for (size_t i = 0; i < q->n; i++) {
		struct qdisk *d = &q->d[i];
		json_object *b = json_object_new_object();

		json_object_array_add(
		    acts, action("block-dirty-bitmap-add",
				 persistent(bitmap_args(d->node, q->bm_next), d->persist)));
		if (d->prev_ok)
			json_object_array_add(acts, action("block-dirty-bitmap-disable",
							   bitmap_args(d->node, q->bm_prev)));
		json_object_object_add(b, "device", json_object_new_string(d->node));
		json_object_object_add(b, "target", json_object_new_string(d->fleece));
		json_object_object_add(b, "sync", json_object_new_string("none"));
		json_object_object_add(b, "job-id", json_object_new_string(d->job));
		json_object_array_add(acts, action("blockdev-backup", b));
	}
	json_object_object_add(args, "actions", acts);
	r = qmp_exec(q, "transaction", args, NULL);
	if (r < 0)
		return r;
	for (size_t i = 0; i < q->n; i++)
		q->d[i].next_added = q->d[i].job_started = 1;
	return 0;
}

static int export_all(src_qemu *q)
{
	json_object *a = json_object_new_object(), *addr = json_object_new_object();
	json_object *data = json_object_new_object();
	int r;

	json_object_object_add(data, "path", json_object_new_string(q->sock));
	json_object_object_add(addr, "type", json_object_new_string("unix"));
	json_object_object_add(addr, "data", data);
	json_object_object_add(a, "addr", addr);
	if ((r = qmp_exec(q, "nbd-server-start", a, NULL)) < 0)
		return r;
	q->server_started = 1;
	for (size_t i = 0; i < q->n; i++) {
		struct qdisk *d = &q->d[i];
		json_object *e = json_object_new_object();
		char id[64];

		snprintf(id, sizeof(id), "%s-e%zu", q->prefix, i);
		json_object_object_add(e, "type", json_object_new_string("nbd"));
		json_object_object_add(e, "id", json_object_new_string(id));
		json_object_object_add(e, "node-name", json_object_new_string(d->fleece));
		json_object_object_add(e, "name", json_object_new_string(d->pub.name));
		if (d->prev_ok) {
			json_object *l = json_object_new_array();
			json_object_array_add(l, json_object_new_string(q->bm_prev));
			json_object_object_add(e, "bitmaps", l);
		}
		if ((r = qmp_exec(q, "block-export-add", e, NULL)) < 0)
			return r;
		d->exported = 1;
	}
	for (size_t i = 0; i < q->n; i++) {
		struct qdisk *d = &q->d[i];
		char label[160];

		snprintf(label, sizeof(label), "QEMU disk '%s'", d->pub.name);
		r = src_nbd_open_unix(q->sock, d->pub.name, d->prev_ok ? q->bm_prev : NULL, label,
				      &d->pub.conn);
		if (r < 0)
			return r;
		if (src_nbd_size(d->pub.conn) != d->size)
			return vbu_fail(-EIO, "QEMU disk '%s' exports %llu bytes, not %llu",
					d->pub.name, (unsigned long long)src_nbd_size(d->pub.conn),
					(unsigned long long)d->size);
		d->pub.src = src_nbd_source(d->pub.conn);
		if (d->prev_ok) {
			if ((r = src_nbd_dirty(d->pub.conn, &d->ext, &d->pub.n_changed_ext)) < 0)
				return r;
			d->pub.changed_ext = d->ext;
		}
	}
	return 0;
}

/* ---- tearing down ---- */

static int jobs_gone(src_qemu *q)
{
	json_object *jobs = NULL;
	int mine = 0;

	if (qmp_exec(q, "query-block-jobs", NULL, &jobs) < 0)
		return 1; /* nothing more to learn */
	for (size_t i = 0;
	     json_object_is_type(jobs, json_type_array) && i < json_object_array_length(jobs);
	     i++) {
		const char *dev = vbu_json_str(json_object_array_get_idx(jobs, i), "device");
		mine |= dev && strncmp(dev, q->prefix, strlen(q->prefix)) == 0;
	}
	json_object_put(jobs);
	return !mine;
}

/* Exports, server, jobs, overlays: everything but the bitmaps. Best effort: the first failure
 * is kept in *first. */
static void teardown(src_qemu *q, int *first)
{
	int r;

	for (size_t i = 0; i < q->n; i++) {
		src_nbd_close(q->d[i].pub.conn);
		q->d[i].pub.conn = NULL;
	}
	for (size_t i = 0; i < q->n; i++) {
		char id[64];
		json_object *a;

		if (!q->d[i].exported)
			continue;
		snprintf(id, sizeof(id), "%s-e%zu", q->prefix, i);
		a = json_object_new_object();
		json_object_object_add(a, "id", json_object_new_string(id));
		if ((r = qmp_exec(q, "block-export-del", a, NULL)) < 0 && !*first)
			*first = r;
		q->d[i].exported = 0;
	}
	if (q->server_started) {
		if ((r = qmp_exec(q, "nbd-server-stop", NULL, NULL)) < 0 && !*first)
			*first = r;
		q->server_started = 0;
	}
	int jobs = 0;

	for (size_t i = 0; i < q->n; i++) {
		json_object *a;

		if (!q->d[i].job_started)
			continue;
		jobs = 1;
		a = json_object_new_object();
		json_object_object_add(a, "device", json_object_new_string(q->d[i].job));
		json_object_object_add(a, "force", json_object_new_boolean(1));
		if ((r = qmp_exec(q, "block-job-cancel", a, NULL)) < 0 && !*first)
			*first = r;
		q->d[i].job_started = 0;
	}
	for (int k = 0; jobs && k < 500 && !jobs_gone(q); k++)
		usleep(20000);
	for (size_t i = 0; i < q->n; i++) {
		if (q->d[i].fleece_added) {
			r = -EBUSY;
			for (int k = 0; k < 50 && r < 0; k++) {
				json_object *a = json_object_new_object();
				json_object_object_add(a, "node-name",
						       json_object_new_string(q->d[i].fleece));
				r = qmp_exec(q, "blockdev-del", a, NULL);
				if (r < 0)
					usleep(20000);
			}
			if (r < 0 && !*first)
				*first = r;
			q->d[i].fleece_added = 0;
		}
		if (q->d[i].overlay[0])
			unlink(q->d[i].overlay);
	}
	if (q->dir[0]) {
		sig_dir_set = 0;
		rmdir(q->dir);
	}
}

/* The bitmaps after the ingest (see src_qemu.h). */
static int settle_bitmaps(src_qemu *q, const char *committed_id)
{
	json_object *acts = json_object_new_array(), *args = json_object_new_object();
	char bm_new[160];
	int any = 0, r;

	snprintf(bm_new, sizeof(bm_new), "vmbak-%s@%s", q->uuid, committed_id ? committed_id : "");
	for (size_t i = 0; i < q->n; i++) {
		struct qdisk *d = &q->d[i];

		if (!d->next_added)
			continue;
		any = 1;
		if (committed_id) {
			json_object_array_add(
			    acts, action("block-dirty-bitmap-add",
					 persistent(bitmap_args(d->node, bm_new), d->persist)));
			json_object_array_add(acts,
					      action("block-dirty-bitmap-merge",
						     merge_args(d->node, bm_new, q->bm_next)));
			if (d->prev_exists)
				json_object_array_add(acts,
						      action("block-dirty-bitmap-remove",
							     bitmap_args(d->node, q->bm_prev)));
		} else if (d->prev_ok) {
			json_object_array_add(acts,
					      action("block-dirty-bitmap-merge",
						     merge_args(d->node, q->bm_prev, q->bm_next)));
			json_object_array_add(acts, action("block-dirty-bitmap-enable",
							   bitmap_args(d->node, q->bm_prev)));
		}
		json_object_array_add(
		    acts, action("block-dirty-bitmap-remove", bitmap_args(d->node, q->bm_next)));
	}
	json_object_object_add(args, "actions", acts);
	if (!any) {
		json_object_put(args);
		return 0;
	}
	r = qmp_exec(q, "transaction", args, NULL);
	if (r == 0)
		for (size_t i = 0; i < q->n; i++)
			q->d[i].next_added = 0;
	return r;
}

int src_qemu_end(src_qemu *q, const char *committed_id)
{
	int first = 0, r;

	if (!q)
		return 0;
	for (size_t i = 0; q->d && i < q->n; i++) {
		/* Our reads end before QEMU's exports do. */
		src_nbd_close(q->d[i].pub.conn);
		q->d[i].pub.conn = NULL;
	}
	if (q->fd < 0 && q->began) {
		int64_t deadline = vbu_mono_ns() / 1000000 + QMP_MS;

		/* The socket may be busy with another client for a moment. */
		while ((r = qmp_connect(q, q->qmp_path)) < 0 && r != -EPROTO &&
		       vbu_mono_ns() / 1000000 < deadline) {
			if (q->fd >= 0)
				close(q->fd);
			q->fd = -1;
			q->blen = 0;
			usleep(100000);
		}
		if (r < 0) {
			first = r;
			if (q->fd >= 0)
				close(q->fd);
			q->fd = -1;
		}
	}
	if (q->fd >= 0) {
		teardown(q, &first);
		r = settle_bitmaps(q, committed_id);
		if (r < 0 && !first)
			first = r;
	}
	for (size_t i = 0; q->d && i < q->n; i++) {
		src_nbd_close(q->d[i].pub.conn);
		free(q->d[i].ext);
	}
	if (q->fd >= 0)
		close(q->fd);
	free(q->d);
	free(q->buf);
	free(q);
	return first;
}

void src_qemu_kill_all(void)
{
	if (!sig_dir_set)
		return;
	/* The overlays QEMU still has open go when it closes them; the names go now. */
	for (int i = 0; i < DISKS_MAX; i++) {
		char p[PATH_MAX];
		size_t n = strlen(sig_dir);

		if (n + 32 > sizeof(p))
			return;
		memcpy(p, sig_dir, n);
		memcpy(p + n, "/fleece", 7);
		{
			/* i in decimal without snprintf (not async-signal safe) */
			char num[8];
			int k = 0, v = i;
			do {
				num[k++] = (char)('0' + v % 10);
				v /= 10;
			} while (v);
			for (int j = 0; j < k; j++)
				p[n + 7 + j] = num[k - 1 - j];
			memcpy(p + n + 7 + k, ".qcow2", 7);
		}
		unlink(p);
	}
	{
		char p[PATH_MAX];
		size_t n = strlen(sig_dir);
		memcpy(p, sig_dir, n);
		memcpy(p + n, "/nbd.sock", 10);
		unlink(p);
	}
	rmdir(sig_dir);
}

size_t src_qemu_count(const src_qemu *q)
{
	return q->n;
}

src_qemu_disk *src_qemu_get(src_qemu *q, size_t i)
{
	return &q->d[i].pub;
}

int src_qemu_begin(const char *qmp_path, const char *const *names, const char *const *nodes,
		   size_t n_want, const char *uuid, const vbs_rp *prev, src_qemu **ret)
{
	src_qemu *q = calloc(1, sizeof(*q));
	const char *tmp = getenv("TMPDIR");
	int r, n;

	if (!q)
		return vbu_fail(-ENOMEM, "out of memory");
	q->fd = -1;
	snprintf(q->uuid, sizeof(q->uuid), "%s", uuid);
	snprintf(q->bm_next, sizeof(q->bm_next), "vmbak-%s+next", uuid);
	if (prev)
		snprintf(q->bm_prev, sizeof(q->bm_prev), "vmbak-%s@%s", uuid, prev->id);
	snprintf(q->prefix, sizeof(q->prefix), "vmbak-%.8s", uuid);
	snprintf(q->qmp_path, sizeof(q->qmp_path), "%s", qmp_path);
	if ((r = qmp_connect(q, qmp_path)) < 0)
		goto fail;
	q->began = 1;
	if (!tmp || tmp[0] != '/')
		tmp = "/tmp";
	n = snprintf(q->dir, sizeof(q->dir), "%s/vmbak-qemu.XXXXXX", tmp);
	if (n < 0 || (size_t)n >= sizeof(q->dir) - 64 || !mkdtemp(q->dir)) {
		r = vbu_fail(n < 0 || (size_t)n >= sizeof(q->dir) - 64 ? -ENAMETOOLONG : -errno,
			     "cannot make a private directory in '%s'", tmp);
		q->dir[0] = 0;
		goto fail;
	}
	memcpy(sig_dir, q->dir, sizeof(sig_dir));
	sig_dir_set = 1;
	n = snprintf(q->sock, sizeof(q->sock), "%.*s/nbd.sock", PATH_MAX - 64, q->dir);
	if (n < 0 || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		r = vbu_fail(-ENAMETOOLONG, "temporary directory '%s' is too long for a socket",
			     tmp);
		goto fail;
	}
	if ((r = clean_leftovers(q)) < 0 || (r = find_disks(q, names, nodes, n_want, prev)) < 0)
		goto fail;
	for (size_t i = 0; i < q->n; i++)
		if ((r = add_fleece(q, &q->d[i], i)) < 0)
			goto fail;
	if ((r = freeze(q)) < 0 || (r = export_all(q)) < 0)
		goto fail;
	/* QEMU serves one QMP client at a time: others (an operator, a management tool) get the
	 * socket while the disks are read; src_qemu_end connects again. */
	close(q->fd);
	q->fd = -1;
	q->blen = 0;
	*ret = q;
	return 0;
fail : {
	char msg[VBU_ERRMSG_MAX];

	/* Undoing must not lose the reason. */
	snprintf(msg, sizeof(msg), "%s", vbu_errmsg());
	src_qemu_end(q, NULL);
	return vbu_fail(r, "%s", msg);
}
}
