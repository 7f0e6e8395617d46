/* src_libvirt.c: the disks of a running libvirt domain (see src_libvirt.h). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "file.h"
#include "jobs_cli.h"
#include "src_libvirt.h"
#include "src_nbd.h"
#include "util.h"
#include "virt_dl.h"
#include "xml_dl.h"

#define CP_PREFIX "vmbak-"
#define BITMAP_PREFIX "vmbak-"

typedef struct lv_disk {
	char name[VBS_NAME_MAX + 1]; /* target dev */
	uint64_t size;		     /* capacity */
	int bitmap;		     /* qcow2: the checkpoint has a bitmap of it */
	int incremental;	     /* read as changes since the checkpoint */
	char note[256];		     /* how it is read, for the point (ingest.h read_note) */
	char scratch[4200];
	src_nbd *conn;
	vbs_extent *ext;
	size_t n_ext;
} lv_disk;

struct src_lv {
	virConnectPtr conn;
	virDomainPtr dom;
	char *domain;
	char prefix[64]; /* "vmbak-<vault uuid>-" */
	char dir[4096];	 /* the private directory, "" when none */
	char sock[4200];
	int job;      /* the backup job runs */
	int uid, gid; /* QEMU's DAC label, -1 when unknown */
	char *xml;    /* inactive XML, no secrets */
	size_t xml_len;
	lv_disk *disks;
	size_t n;
	vbs_ingest_disk *idisks;
	vbs_rp_source source;
	char base_id[VBS_RP_ID_MAX];
};

/* The job a signal would leave running: ended by the signal thread of jobs_cli.h. */
static src_lv *volatile active;

static void quiet(void *arg, virErrorPtr err)
{
}

static const char *lv_msg(void)
{
	const char *m = sym_virGetLastErrorMessage();

	return m ? m : "unknown error";
}

static int lv_code(void)
{
	virErrorPtr e = sym_virGetLastError();

	return e ? e->code : 0;
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vbu_err("warning: %s", msg);
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && sym_xmlStrEqual(c->name, BAD_CAST name))
			return c;
	return NULL;
}

static int prop_is(xmlNodePtr n, const char *name, const char *want, const char *dflt)
{
	xmlChar *v = sym_xmlGetProp(n, BAD_CAST name);
	int r = strcmp(v ? (const char *)v : dflt, want) == 0;

	(*sym_xmlFree)(v);
	return r;
}

/* The disks to back up from the live XML: device disk, writable, not shared, with a source;
 * and QEMU's DAC label. */
static int read_disks(src_lv *lv, const char *live)
{
	xmlDocPtr doc =
	    sym_xmlReadMemory(live, (int)strlen(live), "live.xml", NULL,
			      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNodePtr root = doc ? sym_xmlDocGetRootElement(doc) : NULL, devs, n;
	int status = VMBAK_EXIT_FAIL;

	if (!root) {
		vbu_err("libvirt gave domain '%s' an XML that does not parse", q(lv->domain));
		goto out;
	}
	lv->uid = lv->gid = -1;
	for (n = root->children; n; n = n->next) {
		xmlNodePtr l;
		xmlChar *t;
		int u, g;

		if (n->type != XML_ELEMENT_NODE || !sym_xmlStrEqual(n->name, BAD_CAST "seclabel") ||
		    !prop_is(n, "model", "dac", "") || !(l = child(n, "label")))
			continue;
		t = sym_xmlNodeGetContent(l);
		if (t && sscanf((const char *)t, "+%d:+%d", &u, &g) == 2 && u >= 0 && g >= 0) {
			lv->uid = u;
			lv->gid = g;
		}
		(*sym_xmlFree)(t);
	}
	devs = child(root, "devices");
	for (n = devs ? devs->children : NULL; n; n = n->next) {
		xmlNodePtr target;
		xmlChar *dev;
		lv_disk *d;

		if (n->type != XML_ELEMENT_NODE || !sym_xmlStrEqual(n->name, BAD_CAST "disk") ||
		    !prop_is(n, "device", "disk", "disk") || child(n, "readonly") ||
		    child(n, "shareable") || !child(n, "source") || !(target = child(n, "target")))
			continue;
		dev = sym_xmlGetProp(target, BAD_CAST "dev");
		if (!dev || !vbu_name_valid((const char *)dev)) {
			vbu_err("domain '%s' has a disk whose target '%s' cannot be a disk name",
				q(lv->domain), dev ? q((const char *)dev) : "");
			(*sym_xmlFree)(dev);
			goto out;
		}
		d = realloc(lv->disks, (lv->n + 1) * sizeof(*d));
		if (!d) {
			(*sym_xmlFree)(dev);
			vbu_errno(-ENOMEM, "cannot back up domain '%s'", q(lv->domain));
			goto out;
		}
		lv->disks = d;
		d = &lv->disks[lv->n++];
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%s", (const char *)dev);
		/* Only qcow2 keeps the persistent bitmaps of checkpoints; others are read whole. */
		d->bitmap = child(n, "driver") && prop_is(child(n, "driver"), "type", "qcow2", "");
		(*sym_xmlFree)(dev);
	}
	if (lv->n == 0) {
		vbu_err("domain '%s' has no writable disk to back up", q(lv->domain));
		goto out;
	}
	if (lv->n > VBS_DISKS_MAX) {
		vbu_err("domain '%s' has more than %d disks", q(lv->domain), VBS_DISKS_MAX);
		goto out;
	}
	status = 0;
out:
	sym_xmlFreeDoc(doc);
	return status;
}

/* Appends text to a growing string; -ENOMEM. */
static int cat(char **s, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cat(char **s, size_t *len, const char *fmt, ...)
{
	char *add, *ns;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&add, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	ns = realloc(*s, *len + (size_t)n + 1);
	if (!ns) {
		free(add);
		return -ENOMEM;
	}
	memcpy(ns + *len, add, (size_t)n + 1);
	*s = ns;
	*len += (size_t)n;
	free(add);
	return 0;
}

/* An attribute value of ours: paths come from TMPDIR; anything XML would take for markup is
 * refused rather than escaped. */
static int attr_safe(const char *s)
{
	return !strpbrk(s, "<>&'\"");
}

static int make_xml(const src_lv *lv, const char *since, char **ret_backup, char **ret_cp)
{
	char *b = NULL, *c = NULL;
	size_t bl = 0, cl = 0;
	int e = 0;

	e |= cat(&b, &bl, "<domainbackup mode='pull'>");
	if (since)
		e |= cat(&b, &bl, "<incremental>%s</incremental>", since);
	e |= cat(&b, &bl, "<server transport='unix' socket='%s'/><disks>", lv->sock);
	e |= cat(&c, &cl,
		 "<domaincheckpoint><name>%s</name>"
		 "<description>vmbak: points of VM in vault %.36s</description><disks>",
		 lv->source.checkpoint, lv->prefix + strlen(CP_PREFIX));
	for (size_t i = 0; i < lv->n; i++) {
		const lv_disk *d = &lv->disks[i];

		e |= cat(&b, &bl, "<disk name='%s' backup='yes' type='file' exportname='%s'",
			 d->name, d->name);
		if (since && d->bitmap)
			e |= cat(&b, &bl, " exportbitmap='%s%s'", BITMAP_PREFIX, d->name);
		else if (since)
			e |= cat(&b, &bl, " backupmode='full'");
		e |= cat(&b, &bl, "><driver type='qcow2'/><scratch file='%s'/></disk>", d->scratch);
		e |= cat(&c, &cl, "<disk name='%s' checkpoint='%s'/>", d->name,
			 d->bitmap ? "bitmap" : "no");
	}
	e |= cat(&b, &bl, "</disks></domainbackup>");
	e |= cat(&c, &cl, "</disks></domaincheckpoint>");
	if (e) {
		free(b);
		free(c);
		return -ENOMEM;
	}
	*ret_backup = b;
	if (lv->source.checkpoint[0]) {
		*ret_cp = c;
	} else {
		free(c);
		*ret_cp = NULL;
	}
	return 0;
}

/* The private directory's file that names the process it belongs to. */
#define OWNER "owner"

static void remove_dir(src_lv *lv)
{
	char p[4200];

	if (!lv->dir[0])
		return;
	snprintf(p, sizeof(p), "%s/" OWNER, lv->dir);
	unlink(p);
	unlink(lv->sock);
	for (size_t i = 0; i < lv->n; i++)
		if (lv->disks[i].scratch[0])
			unlink(lv->disks[i].scratch);
	if (rmdir(lv->dir) != 0)
		warn("cannot remove '%s': %s", q(lv->dir), vbu_strerror(errno));
	lv->dir[0] = '\0';
}

static void delete_checkpoint(src_lv *lv, const char *name)
{
	virDomainCheckpointPtr cp;

	if (!name[0])
		return;
	cp = sym_virDomainCheckpointLookupByName(lv->dom, name, 0);
	if (!cp || sym_virDomainCheckpointDelete(cp, 0) < 0)
		warn("cannot delete checkpoint '%s' of domain '%s': %s", name, q(lv->domain),
		     lv_msg());
	if (cp)
		sym_virDomainCheckpointFree(cp);
}

/* The signal thread (jobs_cli.h): the job ended and the new checkpoint deleted before the
 * process exits, so the domain is as the next ingest needs it. */
static void on_signal(void)
{
	src_lv *lv = active;

	if (!lv)
		return;
	for (size_t i = 0; i < lv->n; i++)
		src_nbd_close(lv->disks[i].conn);
	if (lv->job) {
		sym_virDomainAbortJob(lv->dom);
		delete_checkpoint(lv, lv->source.checkpoint);
	}
	remove_dir(lv);
}

/* The checkpoint the VM's latest point names, when an incremental read can start from it:
 * else NULL with why_full said. */
static const char *usable_checkpoint(src_lv *lv, const vbs_rp *prev)
{
	virDomainCheckpointPtr cp;
	vbs_rp_source *s = &lv->source;

	if (!prev)
		return NULL; /* the first point: nothing to say */
	if (prev->damaged) {
		/* Changes on top of a point a verify found damaged would carry its damage on. */
		snprintf(s->why_full, sizeof(s->why_full),
			 "the latest point %s failed verification", prev->id);
		return NULL;
	}
	if (strcmp(prev->source.kind, "libvirt") != 0 || !prev->source.checkpoint[0]) {
		snprintf(s->why_full, sizeof(s->why_full),
			 "the latest point %s was not taken with --libvirt", prev->id);
		return NULL;
	}
	if (strncmp(prev->source.checkpoint, lv->prefix, strlen(lv->prefix)) != 0) {
		snprintf(s->why_full, sizeof(s->why_full),
			 "the latest point %s names a checkpoint of another vault", prev->id);
		return NULL;
	}
	cp = sym_virDomainCheckpointLookupByName(lv->dom, prev->source.checkpoint, 0);
	if (!cp) {
		snprintf(s->why_full, sizeof(s->why_full),
			 "checkpoint %s of the latest point %s is not in the domain",
			 prev->source.checkpoint, prev->id);
		return NULL;
	}
	sym_virDomainCheckpointFree(cp);
	for (size_t i = 0; i < lv->n; i++) {
		size_t k;

		if (!lv->disks[i].bitmap)
			continue;
		for (k = 0; k < prev->n_disks; k++)
			if (strcmp(prev->disks[k].name, lv->disks[i].name) == 0)
				break;
		if (k == prev->n_disks) {
			snprintf(s->why_full, sizeof(s->why_full),
				 "disk %s is not in the latest point %s", lv->disks[i].name,
				 prev->id);
			return NULL;
		}
		if (prev->disks[k].size != lv->disks[i].size) {
			snprintf(s->why_full, sizeof(s->why_full),
				 "disk %s changed size since the latest point %s",
				 lv->disks[i].name, prev->id);
			return NULL;
		}
	}
	return prev->source.checkpoint;
}

/* 1 when the private directory dir (of a job's socket path) belongs to no living vmbak: it is
 * gone, or the process its owner file names is; then what is left of it is removed. */
static int dir_orphaned(const char *dir)
{
	char p[4200], *txt = NULL;
	size_t len = 0;
	long pid;
	DIR *d;
	struct dirent *e;

	snprintf(p, sizeof(p), "%s/" OWNER, dir);
	if (vbu_read_file(p, 32, &txt, &len) == 0) {
		pid = strtol(txt, NULL, 10);
		free(txt);
		if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			return 0;
	} else if (access(dir, F_OK) == 0) {
		return 0; /* not ours to judge */
	}
	if ((d = opendir(dir))) {
		while ((e = readdir(d)))
			if (e->d_name[0] != '.') {
				if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) <
				    (int)sizeof(p))
					unlink(p);
			}
		closedir(d);
		rmdir(dir);
	}
	return 1;
}

/* A backup job an earlier vmbak left when it died (SIGKILL, a power cut of the host running
 * vmbak) is ended; anyone else's is left alone and refused. */
static int check_no_job(src_lv *lv)
{
	char *x, dir[4096];
	const char *p, *start, *end;
	size_t len;

	sym_virResetLastError();
	x = sym_virDomainBackupGetXMLDesc(lv->dom, 0);
	if (!x)
		return 0;
	p = strstr(x, "/vmbak-libvirt.");
	end = p ? strstr(p, "/nbd.sock") : NULL;
	for (start = p; start && start > x && start[-1] != '\'' && start[-1] != '"'; start--)
		;
	len = end ? (size_t)(end - start) : 0;
	if (len && len < sizeof(dir)) {
		memcpy(dir, start, len);
		dir[len] = '\0';
		if (dir_orphaned(dir)) {
			free(x);
			if (sym_virDomainAbortJob(lv->dom) == 0) {
				warn("ended a backup job of domain '%s' that an earlier vmbak left "
				     "running",
				     q(lv->domain));
				return 0;
			}
			vbu_err(
			    "cannot end the backup job an earlier vmbak left on domain '%s': %s",
			    q(lv->domain), lv_msg());
			return VMBAK_EXIT_FAIL;
		}
	}
	free(x);
	vbu_err("domain '%s' has a backup job running already", q(lv->domain));
	return VMBAK_EXIT_FAIL;
}

static int begin_job(src_lv *lv, const src_lv_opts *o, const char *since)
{
	char *bx = NULL, *cx = NULL;
	int r, frozen = 0;

	if (make_xml(lv, since, &bx, &cx) < 0) {
		vbu_errno(-ENOMEM, "cannot back up domain '%s'", q(lv->domain));
		return -1;
	}
	if (o->quiesce) {
		if (sym_virDomainFSFreeze(lv->dom, NULL, 0, 0) < 0) {
			vbu_err("cannot quiesce domain '%s' through its guest agent: %s",
				q(lv->domain), lv_msg());
			free(bx);
			free(cx);
			return -2;
		}
		frozen = 1;
	}
	r = sym_virDomainBackupBegin(lv->dom, bx, cx, 0);
	if (frozen && sym_virDomainFSThaw(lv->dom, NULL, 0, 0) < 0 && r >= 0)
		warn("cannot thaw the file systems of domain '%s': %s", q(lv->domain), lv_msg());
	free(bx);
	free(cx);
	return r < 0 ? -1 : 0;
}

int src_lv_begin(const src_lv_opts *o, src_lv **ret)
{
	src_lv *lv = calloc(1, sizeof(*lv));
	const char *since = NULL, *tmp = getenv("TMPDIR");
	char *live = NULL;
	int status = VMBAK_EXIT_FAIL, r;

	if (!lv) {
		vbu_errno(-ENOMEM, "cannot back up domain '%s'", q(o->domain));
		return VMBAK_EXIT_FAIL;
	}
	if (dlopen_libvirt() < 0 || dlopen_libxml2() < 0) {
		free(lv);
		vbu_err("%s", vbu_errmsg());
		return VMBAK_EXIT_FAIL;
	}
	lv->domain = strdup(o->domain);
	if (!lv->domain) {
		free(lv);
		vbu_errno(-ENOMEM, "cannot back up domain '%s'", q(o->domain));
		return VMBAK_EXIT_FAIL;
	}
	sym_virSetErrorFunc(NULL, quiet);
	lv->conn = sym_virConnectOpen(o->uri);
	if (!lv->conn) {
		if (o->uri)
			vbu_err("cannot connect to libvirt at '%s': %s", q(o->uri), lv_msg());
		else
			vbu_err("cannot connect to libvirt: %s", lv_msg());
		goto out;
	}
	lv->dom = sym_virDomainLookupByName(lv->conn, o->domain);
	if (!lv->dom) {
		if (lv_code() == VIR_ERR_NO_DOMAIN)
			vbu_err("no libvirt domain '%s'", q(o->domain));
		else
			vbu_err("cannot find libvirt domain '%s': %s", q(o->domain), lv_msg());
		goto out;
	}
	if (sym_virDomainIsActive(lv->dom) != 1) {
		vbu_err("domain '%s' is not running: a libvirt backup needs a running domain",
			q(o->domain));
		goto out;
	}
	if ((status = check_no_job(lv)) != 0)
		goto out;
	status = VMBAK_EXIT_FAIL;
	lv->xml = sym_virDomainGetXMLDesc(lv->dom, VIR_DOMAIN_XML_INACTIVE);
	live = sym_virDomainGetXMLDesc(lv->dom, 0);
	if (!lv->xml || !live) {
		vbu_err("cannot get the XML of domain '%s': %s", q(o->domain), lv_msg());
		goto out;
	}
	lv->xml_len = strlen(lv->xml);
	if (lv->xml_len > VBS_RP_FILE_MAX) {
		vbu_err("the XML of domain '%s' has %zu bytes, more than %u", q(o->domain),
			lv->xml_len, VBS_RP_FILE_MAX);
		goto out;
	}
	if ((status = read_disks(lv, live)) != 0)
		goto out;
	status = VMBAK_EXIT_FAIL;
	for (size_t i = 0; i < lv->n; i++) {
		virDomainBlockInfo bi;

		if (sym_virDomainGetBlockInfo(lv->dom, lv->disks[i].name, &bi, 0) < 0) {
			vbu_err("cannot get the size of disk '%s' of domain '%s': %s",
				lv->disks[i].name, q(o->domain), lv_msg());
			goto out;
		}
		lv->disks[i].size = bi.capacity;
	}

	snprintf(lv->prefix, sizeof(lv->prefix), CP_PREFIX "%s-", o->vault_uuid);
	snprintf(lv->source.kind, sizeof(lv->source.kind), "libvirt");
	snprintf(lv->source.origin, sizeof(lv->source.origin), "%s", o->domain);
	for (size_t i = 0; i < lv->n; i++)
		if (lv->disks[i].bitmap)
			snprintf(lv->source.checkpoint, sizeof(lv->source.checkpoint), "%s%lld",
				 lv->prefix, (long long)vbu_now_ns());
	if (lv->source.checkpoint[0])
		since = usable_checkpoint(lv, o->prev);
	else
		snprintf(lv->source.why_full, sizeof(lv->source.why_full),
			 "no disk of the domain is qcow2, which checkpoints need");

	/* The private directory: QEMU creates the socket and the scratch files in it, so it
	 * belongs to QEMU's user where libvirt says which (mode 0700 either way). */
	if (snprintf(lv->dir, sizeof(lv->dir), "%s/vmbak-libvirt.XXXXXX",
		     tmp && tmp[0] == '/' && strlen(tmp) < 1024 ? tmp : "/tmp") >=
		(int)sizeof(lv->dir) ||
	    !mkdtemp(lv->dir)) {
		vbu_errno(-errno, "cannot make a private directory for the backup of '%s'",
			  q(o->domain));
		lv->dir[0] = '\0';
		goto out;
	}
	{
		char own[4200], pid[24];
		int e;

		snprintf(own, sizeof(own), "%s/" OWNER, lv->dir);
		snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		e = vbu_write_file_atomic(own, pid, strlen(pid), 0600);
		if (e < 0) {
			vbu_errno(e, "cannot write '%s'", q(own));
			goto out;
		}
	}
	if (lv->uid >= 0 && geteuid() == 0 && chown(lv->dir, (uid_t)lv->uid, (gid_t)lv->gid) != 0)
		warn("cannot give '%s' to QEMU's user: %s", q(lv->dir), vbu_strerror(errno));
	snprintf(lv->sock, sizeof(lv->sock), "%s/nbd.sock", lv->dir);
	for (size_t i = 0; i < lv->n; i++)
		snprintf(lv->disks[i].scratch, sizeof(lv->disks[i].scratch), "%s/%s.scratch",
			 lv->dir, lv->disks[i].name);
	if (!attr_safe(lv->dir)) {
		vbu_err("cannot back up '%s' from a directory named '%s': set TMPDIR", q(o->domain),
			q(lv->dir));
		goto out;
	}

	active = lv;
	cli_job_on_signal(on_signal);
	r = begin_job(lv, o, since);
	if (r == -1 && since) {
		snprintf(lv->source.why_full, sizeof(lv->source.why_full),
			 "libvirt cannot back up incrementally from checkpoint %s: %s", since,
			 lv_msg());
		since = NULL;
		r = begin_job(lv, o, NULL);
	}
	if (r == -1)
		vbu_err("cannot start a backup of domain '%s': %s", q(o->domain), lv_msg());
	if (r < 0)
		goto out;
	lv->job = 1;
	snprintf(lv->source.read, sizeof(lv->source.read), "%s", since ? "incremental" : "full");
	if (since) {
		snprintf(lv->source.since, sizeof(lv->source.since), "%s", since);
		snprintf(lv->base_id, sizeof(lv->base_id), "%s", o->prev->id);
	} else if (lv->source.why_full[0] && o->prev) {
		vbu_err("full read of domain '%s': %s", q(o->domain), lv->source.why_full);
	}

	lv->idisks = calloc(lv->n, sizeof(*lv->idisks));
	if (!lv->idisks) {
		vbu_errno(-ENOMEM, "cannot back up domain '%s'", q(o->domain));
		goto out;
	}
	for (size_t i = 0; i < lv->n; i++) {
		lv_disk *d = &lv->disks[i];
		char bitmap[VBS_NAME_MAX + 16], label[600];

		snprintf(bitmap, sizeof(bitmap), BITMAP_PREFIX "%s", d->name);
		snprintf(label, sizeof(label), "disk %s of domain %s", d->name, o->domain);
		d->incremental = since && d->bitmap;
		r = src_nbd_open_unix(lv->sock, d->name, d->incremental ? bitmap : NULL, label,
				      &d->conn);
		if (r == 0 && src_nbd_size(d->conn) != d->size)
			r = vbu_fail(-EIO, "the export has %llu bytes, libvirt said %llu",
				     (unsigned long long)src_nbd_size(d->conn),
				     (unsigned long long)d->size);
		if (r == 0 && d->incremental)
			r = src_nbd_dirty(d->conn, &d->ext, &d->n_ext);
		if (r < 0) {
			vbu_err("cannot read disk '%s' of domain '%s': %s", d->name, q(o->domain),
				vbu_errmsg()[0] ? q(vbu_errmsg()) : vbu_strerror(-r));
			goto out;
		}
		if (d->incremental)
			snprintf(d->note, sizeof(d->note),
				 "incremental: libvirt checkpoint %s since point %s", since,
				 o->prev->id);
		else if (since)
			snprintf(d->note, sizeof(d->note),
				 "full: not qcow2, so no checkpoint bitmap");
		else if (lv->source.why_full[0])
			snprintf(d->note, sizeof(d->note), "full: %.240s", lv->source.why_full);
		lv->idisks[i].name = d->name;
		lv->idisks[i].src = src_nbd_source(d->conn);
		lv->idisks[i].read_note = d->note[0] ? d->note : NULL;
		if (d->incremental) {
			lv->idisks[i].changed_ext = d->ext;
			lv->idisks[i].n_changed_ext = d->n_ext;
		}
	}
	*ret = lv;
	lv = NULL;
	status = 0;
out:
	free(live);
	src_lv_end(lv, 0);
	return status;
}

const vbs_ingest_disk *src_lv_disks(const src_lv *lv, size_t *ret_n)
{
	*ret_n = lv->n;
	return lv->idisks;
}

const vbs_rp_source *src_lv_source(const src_lv *lv)
{
	return &lv->source;
}

const char *src_lv_base_id(const src_lv *lv)
{
	return lv->base_id[0] ? lv->base_id : NULL;
}

vbs_rp_file src_lv_domain_xml(const src_lv *lv)
{
	return (vbs_rp_file){(uint8_t *)lv->xml, lv->xml_len};
}

/* After a committed point: the vault's checkpoints of the domain other than the new one. */
static void tidy(src_lv *lv)
{
	virDomainCheckpointPtr *cps = NULL;
	int n = sym_virDomainListAllCheckpoints(lv->dom, &cps, 0);

	if (n < 0) {
		warn("cannot list the checkpoints of domain '%s': %s", q(lv->domain), lv_msg());
		return;
	}
	for (int i = 0; i < n; i++) {
		const char *name = sym_virDomainCheckpointGetName(cps[i]);

		if (name && strncmp(name, lv->prefix, strlen(lv->prefix)) == 0 &&
		    strcmp(name, lv->source.checkpoint) != 0 &&
		    sym_virDomainCheckpointDelete(cps[i], 0) < 0)
			warn("cannot delete checkpoint '%s' of domain '%s': %s", name,
			     q(lv->domain), lv_msg());
		sym_virDomainCheckpointFree(cps[i]);
	}
	free(cps);
}

void src_lv_end(src_lv *lv, int committed)
{
	if (!lv)
		return;
	for (size_t i = 0; i < lv->n; i++) {
		src_nbd_close(lv->disks[i].conn);
		lv->disks[i].conn = NULL;
		free(lv->disks[i].ext);
	}
	if (lv->job) {
		if (sym_virDomainAbortJob(lv->dom) < 0)
			warn("cannot end the backup job of domain '%s': %s", q(lv->domain),
			     lv_msg());
		if (committed)
			tidy(lv);
		else
			delete_checkpoint(lv, lv->source.checkpoint);
	}
	cli_job_on_signal(NULL);
	active = NULL;
	remove_dir(lv);
	if (lv->dom)
		sym_virDomainFree(lv->dom);
	if (lv->conn)
		sym_virConnectClose(lv->conn);
	free(lv->xml);
	free(lv->disks);
	free(lv->idisks);
	free(lv->domain);
	free(lv);
}
