/* cmd_ingest.c: vmbak ingest, a new recovery point of a VM from its disk images.
 *
 * In three steps: ingest_option (each option into an ingest_args), ingest_validate and
 * ingest_run, run in turn by verb_main (common.h).
 * Everything the command line says is checked before the vault is opened: names, duplicates,
 * dates, that every source exists and is a regular file or a block device. Then the vault is
 * opened and unlocked, and vbs_ingest() does the work; it commits the point whole or not at
 * all, so any error after that leaves the vault as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "file.h"
#include "jobs_cli.h"
#include "ingest.h"
#include "kv.h"
#include "rp.h"
#include "src_libvirt.h"
#include "src_nbd.h"
#include "src_qemu.h"
#include "util.h"
#include "vault.h"

#define INGEST_USAGE                                                                               \
	"vmbak ingest VAULT VM --disk NAME=PATH|NBD_URI [--disk ...] [--format NAME=FORMAT ...] "  \
	"[--changed NAME=FILE ...] [--qemu QMP_SOCKET [--disk NAME=NODE ...]] "                    \
	"[--retain-until YYYY-MM-DD] [--keyvault KV --escrow NAME=SECRET ...] "                    \
	"[--escrow-kind NAME=KIND ...] [--check-escrow] [--config FILE] [--threads N] "            \
	"[--progress] | "                                                                          \
	"vmbak ingest VAULT VM --libvirt DOMAIN [--connect URI] [--quiesce] [--config FILE] "      \
	"[--retain-until YYYY-MM-DD] [--keyvault KV --escrow NAME=SECRET ...] "                    \
	"[--escrow-kind NAME=KIND ...] [--check-escrow] [--threads N] [--progress]"

#define THREADS_MAX 1024

static const char ingest_help[] =
    "usage: vmbak ingest VAULT VM --disk NAME=PATH|NBD_URI [--disk ...]\n"
    "                    [--format NAME=FORMAT ...]\n"
    "                    [--changed NAME=FILE ...] [--retain-until YYYY-MM-DD]\n"
    "                    [--keyvault KV --escrow NAME=SECRET ...]\n"
    "                    [--escrow-kind NAME=KIND ...] [--check-escrow]\n"
    "                    [--config FILE] [--threads N] [--progress]\n"
    "       vmbak ingest VAULT VM --qemu QMP_SOCKET [--disk NAME=NODE ...]\n"
    "                    [--config FILE] [--retain-until YYYY-MM-DD] [--threads N]\n"
    "                    [--keyvault KV --escrow NAME=SECRET ...]\n"
    "                    [--escrow-kind NAME=KIND ...] [--check-escrow] [--progress]\n"
    "       vmbak ingest VAULT VM --libvirt DOMAIN [--connect URI] [--quiesce]\n"
    "                    [--config FILE] [--retain-until YYYY-MM-DD] [--threads N]\n"
    "                    [--keyvault KV --escrow NAME=SECRET ...]\n"
    "                    [--escrow-kind NAME=KIND ...] [--check-escrow] [--progress]\n"
    "\n"
    "Takes a new recovery point of the VM named VM from its disks and prints its id as the\n"
    "last line of standard output.\n"
    "\n"
    "options:\n"
    "  --disk NAME=PATH        a disk of the VM: its name and a raw image (regular file or\n"
    "                          block device); repeat for every disk, at most 256\n"
    "  --disk NAME=NBD_URI     a disk read over NBD: nbd://HOST[:PORT]/EXPORT,\n"
    "                          nbd+unix:///EXPORT?socket=PATH, or nbds:// (nbds+unix://)\n"
    "                          with TLS required; holes the server reports are not read\n"
    "  --format NAME=FORMAT    disk NAME's PATH is an image of FORMAT: qcow2, vmdk, vhdx,\n"
    "                          vpc or raw, read through a private `qemu-nbd --read-only`\n"
    "                          (with its qcow2 backing chain); a format is never guessed\n"
    "  --qemu QMP_SOCKET       take the disks of a running QEMU VM at one instant through its\n"
    "                          QMP socket, while the guest runs: every writable disk, or\n"
    "                          those named with --disk NAME=NODE (a node name, drive id or\n"
    "                          device id); later points read only what changed since the\n"
    "                          VM's latest point in this vault (a persistent dirty bitmap),\n"
    "                          or everything, saying why on stderr\n"
    "  --changed NAME=FILE     read only the extents listed in FILE (lines \"OFFSET LENGTH\n"
    "                          [TYPE [DESCRIPTION]]\", as `nbdinfo --map` prints them) of disk\n"
    "                          NAME and take the rest from the VM's latest point\n"
    "  --retain-until DATE     keep the point at least until DATE (YYYY-MM-DD, UTC, in the\n"
    "                          future)\n"
    "  --libvirt DOMAIN        back up the running libvirt domain DOMAIN: every writable\n"
    "                          disk (named by its target, e.g. vda) at one instant, in a\n"
    "                          pull-mode backup job with a checkpoint named after the\n"
    "                          vault; the next point reads only what changed since (a\n"
    "                          full read when it cannot, said on stderr and recorded);\n"
    "                          the domain's XML (no secrets) is kept as domain.xml\n"
    "  --connect URI           with --libvirt: libvirt's URI (default: libvirt's default)\n"
    "  --quiesce               with --libvirt: freeze the guest's file systems through its\n"
    "                          guest agent while the job starts (fails without an agent)\n"
    "  --config FILE           keep FILE (the VM's configuration, any bytes, at most\n"
    "                          256 KiB) with the point, shown as <vm>/<rp>/config in\n"
    "                          the mount\n"
    "  --threads N             worker threads (default: one per CPU)\n"
    "  --progress              show progress on stderr even when it is not a terminal\n"
    "  --passphrase-file F     read the vault passphrase from the first line of F\n"
    "  --keyvault KV           the key vault of the secrets named by --escrow\n"
    "  --escrow NAME=SECRET    keep with the point a copy of the latest version of secret\n"
    "                          SECRET of the key vault, for disk NAME, wrapped by its KEK\n"
    "                          (shown as NAME.key in the mount); repeat for every disk.\n"
    "                          Any source: a path, an NBD URI, --format, --qemu (NAME as\n"
    "                          the point names the disk) or --libvirt (the target, vda);\n"
    "                          a VM's header is read from its disks at the point's instant\n"
    "  --keyvault-passphrase-file F\n"
    "                          the key vault passphrase, needed only for a secret wrapped\n"
    "                          by an AES KEK or stored without a KEK (else also from\n"
    "                          VMBAK_KEYVAULT_PASSPHRASE_FILE, VMBAK_KEYVAULT_PASSPHRASE or\n"
    "                          the terminal)\n"
    "  --escrow-kind NAME=KIND the kind of secret escrowed for disk NAME, recorded in its\n"
    "                          blob: luks, bitlocker-password, bitlocker-recovery (the\n"
    "                          48-digit recovery password) or bitlocker-startup-key (a .BEK\n"
    "                          file's bytes). Default: luks for a LUKS disk; for a BitLocker\n"
    "                          disk, found from the secret's value (which needs the key vault\n"
    "                          unlocked, as with --check-escrow); none for other disks\n"
    "  --check-escrow          check that each escrowed secret opens the LUKS or BitLocker\n"
    "                          header of its disk (with cryptsetup, on a private copy of the\n"
    "                          header; needs the key vault passphrase), and make no point\n"
    "                          otherwise\n"
    "  -h, --help              show this help\n"
    "\n"
    "Names of VMs and disks: " VBS_NAME_RULE ".\n";

typedef struct name_path {
	char *name; /* malloc'ed copy of the part before '=' */
	const char *path;
	const char *opt; /* "--disk" or "--changed", for messages */
} name_path;

/* NAME=PATH of --disk and --changed. */
static int split_name_path(const char *opt, const char *arg, name_path *ret)
{
	const char *eq = strchr(arg, '=');
	size_t path_len;

	const char *what = strcmp(opt, "--disk") == 0	       ? "PATH"
			   : strcmp(opt, "--format") == 0      ? "FORMAT"
			   : strcmp(opt, "--escrow") == 0      ? "SECRET"
			   : strcmp(opt, "--escrow-kind") == 0 ? "KIND"
							       : "FILE";

	if (!eq)
		return usage_err("invalid %s '%s': use %s NAME=%s", opt, q(arg), opt, what);
	path_len = strlen(eq + 1);
	if (path_len == 0)
		return usage_err("empty %s in %s '%s'",
				 strcmp(what, "PATH") == 0 || strcmp(what, "FILE") == 0 ? "path"
				 : strcmp(what, "KIND") == 0				? "kind"
				 : strcmp(what, "FORMAT") == 0				? "format"
							     : "secret name",
				 opt, q(arg));
	if (path_len >= PATH_MAX)
		return usage_err("path in %s is too long (%zu bytes, at most %d)", opt, path_len,
				 PATH_MAX - 1);
	ret->name = strndup(arg, (size_t)(eq - arg));
	if (!ret->name) {
		vbu_errno(-ENOMEM, "cannot parse %s", opt);
		return VMBAK_EXIT_FAIL;
	}
	ret->path = eq + 1;
	ret->opt = opt;
	return 0;
}

static int check_names(const name_path *list, size_t n, const char *what)
{
	size_t i, j;
	int r;

	for (i = 0; i < n; i++) {
		r = check_name_arg(what, list[i].name);
		if (r != 0)
			return r;
		for (j = 0; j < i; j++)
			if (strcmp(list[i].name, list[j].name) == 0)
				return usage_err("disk '%s' is given twice with %s", list[i].name,
						 list[i].opt);
	}
	return 0;
}

/* A disk's source: it must exist, be a regular file or a block device, and be readable. */
static int check_source(const name_path *d)
{
	struct stat st;
	int fd;

	if (src_nbd_is_uri(d->path))
		return 0; /* checked when connecting, before the vault is opened */
	fd = open(d->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		vbu_errno(-errno, "cannot open disk '%s' source '%s'", d->name, q(d->path));
		return VMBAK_EXIT_FAIL;
	}
	if (fstat(fd, &st) < 0) {
		vbu_errno(-errno, "cannot open disk '%s' source '%s'", d->name, q(d->path));
		close(fd);
		return VMBAK_EXIT_FAIL;
	}
	close(fd);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		vbu_err("disk '%s' source '%s' is %s, not a regular file or block device", d->name,
			q(d->path), S_ISDIR(st.st_mode) ? "a directory" : "a special file");
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

static int check_changed_file(const name_path *c)
{
	struct stat st;
	int fd;

	fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		vbu_errno(-errno, "cannot open changed-extents file '%s' of disk '%s'", q(c->path),
			  c->name);
		if (fd >= 0)
			close(fd);
		return VMBAK_EXIT_FAIL;
	}
	close(fd);
	if (!S_ISREG(st.st_mode)) {
		vbu_err("changed-extents file '%s' of disk '%s' is not a regular file", q(c->path),
			c->name);
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

/* --config FILE: a regular file of at most VBS_RP_FILE_MAX bytes, read whole now. */
static int read_config(const char *path, char **ret, size_t *ret_len)
{
	struct stat st;
	int r;

	if (stat(path, &st) < 0) {
		vbu_errno(-errno, "cannot read config file '%s'", q(path));
		return VMBAK_EXIT_FAIL;
	}
	if (!S_ISREG(st.st_mode)) {
		vbu_err("config file '%s' is not a regular file", q(path));
		return VMBAK_EXIT_FAIL;
	}
	r = vbu_read_file(path, VBS_RP_FILE_MAX, ret, ret_len);
	if (r == -EFBIG) {
		vbu_err("config file '%s' is larger than %u bytes", q(path), VBS_RP_FILE_MAX);
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0) {
		vbu_errno(r, "cannot read config file '%s'", q(path));
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

/* Progress on stderr: one line rewritten with \r, at most PROGRESS_NS apart. */
#define PROGRESS_NS (250 * 1000 * 1000LL)

typedef struct progress {
	const char *vm;
	int64_t start_ns, last_ns;
	uint64_t total; /* as last reported */
	int printed;	/* something is on the line */
	int last_len;	/* its length, to blank out what a shorter line leaves */
} progress;

/* "1:05" or "2:03:40" */
static void format_duration(uint64_t s, char *buf, size_t cap)
{
	if (s >= 3600)
		snprintf(buf, cap, "%llu:%02llu:%02llu", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60));
	else
		snprintf(buf, cap, "%llu:%02llu", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
}

static void progress_print(progress *p, const char *line, int n)
{
	if (n < 0)
		return;
	if ((size_t)n > strlen(line))
		n = (int)strlen(line); /* cut by snprintf */
	fprintf(stderr, "\r%s%*s", line, p->last_len > n ? p->last_len - n : 0, "");
	fflush(stderr);
	p->last_len = n;
	p->printed = 1;
}

static void progress_line(progress *p, uint64_t done, uint64_t total, int64_t now)
{
	char line[256], ts[HUMAN_SIZE_LEN], left[32];
	double secs = (double)(now - p->start_ns) / 1e9;
	double rate, pct;

	if (done > total)
		done = total;
	rate = secs > 0 ? (double)done / secs : 0;
	pct = total ? 100.0 * (double)done / (double)total : 100.0;
	if (rate > 0 && secs >= 0.2)
		format_duration((uint64_t)((double)(total - done) / rate + 0.5), left,
				sizeof(left));
	else
		snprintf(left, sizeof(left), "-:--");
	progress_print(p, line,
		       snprintf(line, sizeof(line), "ingest %s: %5.1f%% of %s, %.1f MB/s, %s left",
				p->vm, pct, human_size(total, ts), rate / 1e6, left));
	p->total = total;
	p->last_ns = now;
}

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	progress *p = arg;
	int64_t now = vbu_mono_ns();

	if (p->printed && now - p->last_ns < PROGRESS_NS && done < total)
		return;
	progress_line(p, done, total, now);
}

/* Ends the progress line, so what follows (an error, the shell prompt) starts a new one; after
 * a success the line says how long it took. */
static void progress_end(progress *p, int ok)
{
	char line[256], ts[HUMAN_SIZE_LEN], took[32];
	double secs;

	if (!p->printed)
		return;
	if (ok) {
		secs = (double)(vbu_mono_ns() - p->start_ns) / 1e9;
		format_duration((uint64_t)(secs + 0.5), took, sizeof(took));
		progress_print(p, line,
			       snprintf(line, sizeof(line),
					"ingest %s: 100.0%% of %s, %.1f MB/s, done in %s", p->vm,
					human_size(p->total, ts),
					secs > 0 ? (double)p->total / secs / 1e6 : 0.0, took));
	}
	fputc('\n', stderr);
	fflush(stderr);
	p->printed = 0;
}

enum { OPT_DISK = 0x100, OPT_CHANGED, OPT_RETAIN, OPT_THREADS, OPT_PROGRESS };
enum { OPT_FORMAT = 0x1c0, OPT_QEMU };
enum { OPT_KEYVAULT = 0x180, OPT_ESCROW, OPT_KV_PASSFILE, OPT_CHECK_ESCROW, OPT_ESCROW_KIND };
enum { OPT_CONFIG = 0x1e0, OPT_LIBVIRT, OPT_CONNECT, OPT_QUIESCE };

/* The command line of one ingest: filled by ingest_option, checked by ingest_validate, carried
 * out by ingest_run; freed by ingest_args_free. Strings point into argv, except the names of
 * the name_path lists (malloc'ed). */
typedef struct ingest_args {
	const char *path, *vm;
	name_path *disks, *changed, *formats;
	size_t n_disks, n_changed, n_formats;
	const char *retain_arg, *passphrase_file;
	const char *qemu; /* --qemu QMP_SOCKET: --disk values name QEMU nodes or devices */
	int64_t retain_until; /* from retain_arg, by ingest_validate */
	unsigned threads;
	int show_progress;
	/* --keyvault KV --escrow NAME=SECRET */
	name_path *escrow, *kinds;
	size_t n_escrow, n_kinds;
	const char *kv_path, *kv_passfile;
	int check_escrow;
	const char *config_path; /* --config FILE */
	const char *libvirt, *connect; /* --libvirt DOMAIN, --connect URI */
	int quiesce;
	char *config;		 /* its bytes, read by ingest_validate */
	size_t config_len;
} ingest_args;

static void ingest_args_free(ingest_args *a)
{
	size_t i;

	for (i = 0; a->disks && i < a->n_disks; i++)
		free(a->disks[i].name);
	for (i = 0; a->changed && i < a->n_changed; i++)
		free(a->changed[i].name);
	for (i = 0; a->formats && i < a->n_formats; i++)
		free(a->formats[i].name);
	free(a->disks);
	free(a->changed);
	free(a->formats);
	for (i = 0; a->escrow && i < a->n_escrow; i++)
		free(a->escrow[i].name);
	free(a->escrow);
	for (i = 0; a->kinds && i < a->n_kinds; i++)
		free(a->kinds[i].name);
	free(a->kinds);
	free(a->config);
}

static const struct option ingest_options[] = {
    {"disk", required_argument, NULL, OPT_DISK},
    {"changed", required_argument, NULL, OPT_CHANGED},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"qemu", required_argument, NULL, OPT_QEMU},
    {"retain-until", required_argument, NULL, OPT_RETAIN},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"keyvault", required_argument, NULL, OPT_KEYVAULT},
    {"escrow", required_argument, NULL, OPT_ESCROW},
    {"keyvault-passphrase-file", required_argument, NULL, OPT_KV_PASSFILE},
    {"check-escrow", no_argument, NULL, OPT_CHECK_ESCROW},
    {"escrow-kind", required_argument, NULL, OPT_ESCROW_KIND},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"libvirt", required_argument, NULL, OPT_LIBVIRT},
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"quiesce", no_argument, NULL, OPT_QUIESCE},
    {NULL, 0, NULL, 0},
};

/* One option into *a, in its form (NAME=PATH, a thread count). An exit status. */
static int ingest_option(verb_ctx *c, int opt, const char *optval)
{
	ingest_args *a = c->opts;
	int status;

	if (!a->disks) {
		/* Every --disk or --changed takes at least one element of argv. */
		a->disks = calloc((size_t)c->argc, sizeof(*a->disks));
		a->changed = calloc((size_t)c->argc, sizeof(*a->changed));
		a->escrow = calloc((size_t)c->argc, sizeof(*a->escrow));
		a->kinds = calloc((size_t)c->argc, sizeof(*a->kinds));
		a->formats = calloc((size_t)c->argc, sizeof(*a->formats));
		if (!a->disks || !a->changed || !a->escrow || !a->kinds || !a->formats) {
			vbu_errno(-ENOMEM, "cannot parse the command line");
			return VMBAK_EXIT_FAIL;
		}
	}
	switch (opt) {
	case OPT_DISK:
		status = split_name_path("--disk", optval, &a->disks[a->n_disks]);
		if (status != 0)
			return status;
		a->n_disks++;
		break;
	case OPT_CHANGED:
		status = split_name_path("--changed", optval, &a->changed[a->n_changed]);
		if (status != 0)
			return status;
		a->n_changed++;
		break;
	case OPT_FORMAT:
		status = split_name_path("--format", optval, &a->formats[a->n_formats]);
		if (status != 0)
			return status;
		a->n_formats++;
		break;
	case OPT_QEMU:
		if (!*optval)
			return usage_err("empty argument for --qemu");
		a->qemu = optval;
		break;
	case OPT_ESCROW:
		status = split_name_path("--escrow", optval, &a->escrow[a->n_escrow]);
		if (status != 0)
			return status;
		a->n_escrow++;
		break;
	case OPT_ESCROW_KIND:
		status = split_name_path("--escrow-kind", optval, &a->kinds[a->n_kinds]);
		if (status != 0)
			return status;
		a->n_kinds++;
		break;
	case OPT_KEYVAULT:
	case OPT_KV_PASSFILE:
		if (!*optval)
			return usage_err("empty argument for --%s",
					 opt == OPT_KEYVAULT ? "keyvault"
							     : "keyvault-passphrase-file");
		*(opt == OPT_KEYVAULT ? &a->kv_path : &a->kv_passfile) = optval;
		break;
	case OPT_CHECK_ESCROW:
		a->check_escrow = 1;
		break;
	case OPT_CONFIG:
		if (!*optval)
			return usage_err("empty argument for --config");
		if (a->config_path)
			return usage_err("--config is given twice");
		a->config_path = optval;
		break;
	case OPT_LIBVIRT:
	case OPT_CONNECT:
		if (!*optval)
			return usage_err("empty argument for --%s",
					 opt == OPT_LIBVIRT ? "libvirt" : "connect");
		*(opt == OPT_LIBVIRT ? &a->libvirt : &a->connect) = optval;
		break;
	case OPT_QUIESCE:
		a->quiesce = 1;
		break;
	case OPT_RETAIN:
		a->retain_arg = optval;
		break;
	case OPT_THREADS: {
		unsigned long t;

		if (parse_count(optval, 1, THREADS_MAX, &t) < 0)
			return usage_err("invalid thread count '%s': use 1 to %d", q(optval),
					 THREADS_MAX);
		a->threads = (unsigned)t;
		break;
	}
	case OPT_PROGRESS:
		a->show_progress = 1;
		break;
	default:
		return VMBAK_EXIT_USAGE;
	}
	return 0;
}

/* Everything the command line says, checked before the vault is opened, each with its one-line
 * message (usage errors): names, duplicates, what refers to what, the date; then the world
 * outside the command line (runtime errors): every source and changed-extents file. Sets
 * a->retain_until. An exit status. */
static int ingest_validate(verb_ctx *c)
{
	ingest_args *a = c->opts;
	size_t i, j;
	int status;

	/* The vault path was checked by verb_main (VERB_VAULT_ARG). */
	a->path = c->args[0];
	a->vm = c->args[1];
	a->passphrase_file = c->passphrase_file;
	a->show_progress |= c->g->progress;
	status = check_name_arg("VM", a->vm);
	if (status != 0)
		return status;

	if (a->libvirt) {
		if (a->n_disks || a->n_changed || a->n_formats || a->qemu)
			return usage_err("--libvirt takes the domain's disks: not with --disk, "
					 "--changed, --format or --qemu");
	} else if (a->connect || a->quiesce) {
		return usage_err("--connect and --quiesce go with --libvirt DOMAIN");
	}
	if (a->qemu && (a->n_formats || a->n_changed))
		return usage_err("--qemu reads the VM's disks itself: no --format or --changed");
	if (a->n_disks == 0 && !a->qemu && !a->libvirt)
		return usage_err("no disk given: use --disk NAME=PATH for each disk of VM '%s', "
				 "--qemu QMP_SOCKET or --libvirt DOMAIN",
				 a->vm);
	if (a->n_disks > VBS_DISKS_MAX)
		return usage_err("too many disks (%zu): at most %d", a->n_disks, VBS_DISKS_MAX);
	status = check_names(a->disks, a->n_disks, "disk");
	if (status != 0)
		return status;
	status = check_names(a->changed, a->n_changed, "disk");
	if (status != 0)
		return status;
	for (i = 0; i < a->n_changed; i++) {
		for (j = 0; j < a->n_disks; j++)
			if (strcmp(a->changed[i].name, a->disks[j].name) == 0)
				break;
		if (j == a->n_disks)
			return usage_err("--changed names disk '%s', which no --disk gives",
					 a->changed[i].name);
	}
	status = check_names(a->formats, a->n_formats, "disk");
	if (status != 0)
		return status;
	for (i = 0; i < a->n_formats; i++) {
		for (j = 0; j < a->n_disks; j++)
			if (strcmp(a->formats[i].name, a->disks[j].name) == 0)
				break;
		if (j == a->n_disks)
			return usage_err("--format names disk '%s', which no --disk gives",
					 a->formats[i].name);
		if (!src_image_format_valid(a->formats[i].path))
			return usage_err("unknown image format '%s' for disk '%s': use %s",
					 q(a->formats[i].path), a->formats[i].name,
					 SRC_IMAGE_FORMATS);
		if (src_nbd_is_uri(a->disks[j].path))
			return usage_err("--format for disk '%s', which is an NBD URI: the server "
					 "gives raw bytes", a->formats[i].name);
	}
	status = check_names(a->escrow, a->n_escrow, "disk");
	if (status != 0)
		return status;
	for (i = 0; i < a->n_escrow; i++) {
		/* --libvirt, and --qemu without --disk: the VM names its disks, which are known
		 * only once they are taken (escrow_headers() checks the names then). */
		for (j = 0; j < a->n_disks; j++)
			if (strcmp(a->escrow[i].name, a->disks[j].name) == 0)
				break;
		if (j == a->n_disks && a->n_disks > 0)
			return usage_err("--escrow names disk '%s', which no --disk gives",
					 a->escrow[i].name);
		if (!vbu_name_valid(a->escrow[i].path))
			return usage_err("invalid secret name '%s' in --escrow: use %s",
					 q(a->escrow[i].path), VBK_KV_NAME_RULE);
	}
	status = check_names(a->kinds, a->n_kinds, "disk");
	if (status != 0)
		return status;
	for (i = 0; i < a->n_kinds; i++) {
		vbk_kind k;

		for (j = 0; j < a->n_escrow; j++)
			if (strcmp(a->kinds[i].name, a->escrow[j].name) == 0)
				break;
		if (j == a->n_escrow)
			return usage_err("--escrow-kind names disk '%s', which no --escrow gives",
					 a->kinds[i].name);
		if (vbk_kind_parse(a->kinds[i].path, &k) < 0)
			return usage_err("invalid kind '%s' in --escrow-kind: use one of %s",
					 q(a->kinds[i].path), VBK_KIND_NAMES);
	}
	if (a->n_escrow > 0 && !a->kv_path)
		return usage_err("--escrow needs --keyvault KV, the key vault of its secrets");
	if (a->check_escrow && a->n_escrow == 0)
		return usage_err("--check-escrow needs --escrow NAME=SECRET");
	if (a->kv_path && a->n_escrow == 0)
		return usage_err("--keyvault needs --escrow NAME=SECRET for at least one disk");
	if (a->retain_arg) {
		if (vbu_parse_date(a->retain_arg, &a->retain_until) < 0)
			return usage_err("invalid date '%s' for --retain-until: use YYYY-MM-DD",
					 q(a->retain_arg));
		if (a->retain_until <= vbu_now_ns() / 1000000000)
			return usage_err("--retain-until date '%s' is not in the future",
					 a->retain_arg);
	}

	/* The world outside the command line: failures from here on are runtime errors. */
	for (i = 0; i < a->n_disks && !a->qemu; i++) {
		status = check_source(&a->disks[i]);
		if (status != 0)
			return status;
	}
	for (i = 0; i < a->n_changed; i++) {
		status = check_changed_file(&a->changed[i]);
		if (status != 0)
			return status;
	}
	if (a->config_path)
		return read_config(a->config_path, &a->config, &a->config_len);
	return 0;
}

/* On SIGINT, SIGTERM, SIGHUP (jobs_cli.h): no helper process or private directory stays. */
static void on_signal_cleanup(void)
{
	src_image_kill_all();
	src_qemu_kill_all();
}

/* Before the job's signal thread starts (cli_job_start): the same cleanup, then the signal's
 * default action. */
static void on_early_signal(int sig)
{
	on_signal_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void early_signals(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {0};

	sa.sa_handler = on_early_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&sa.sa_mask, sigs[i]);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	cli_job_on_signal(on_signal_cleanup);
}

/* The disks read over NBD: a connection per disk, and a qemu-nbd for each disk with --format.
 * Opened before the vault (a source that cannot be read stops the ingest before the
 * passphrase is asked), closed after the ingest, on failure too. */
typedef struct nbd_disks {
	size_t n;
	src_nbd **conn;	  /* [n], NULL for a disk read from its path */
	src_image **img;  /* [n], NULL without --format */
} nbd_disks;

static void nbd_disks_close(nbd_disks *nd)
{
	for (size_t i = 0; i < nd->n; i++) {
		src_nbd_close(nd->conn ? nd->conn[i] : NULL);
		src_image_stop(nd->img ? nd->img[i] : NULL);
	}
	free(nd->conn);
	free(nd->img);
	nd->conn = NULL;
	nd->img = NULL;
}

static int nbd_disks_open(const ingest_args *a, vbs_ingest_disk *idisks, nbd_disks *nd)
{
	int r, signals = 0;

	nd->n = a->n_disks;
	nd->conn = calloc(a->n_disks, sizeof(*nd->conn));
	nd->img = calloc(a->n_disks, sizeof(*nd->img));
	if (!nd->conn || !nd->img)
		return store_err(-ENOMEM, "cannot ingest VM '%s'", a->vm);
	for (size_t i = 0; i < a->n_disks; i++) {
		const char *fmt = NULL, *path = a->disks[i].path;

		for (size_t j = 0; j < a->n_formats; j++)
			if (strcmp(a->formats[j].name, a->disks[i].name) == 0)
				fmt = a->formats[j].path;
		if (fmt) {
			if (!signals++)
				early_signals();
			r = src_image_start(path, fmt, &nd->img[i]);
			if (r == 0)
				r = src_nbd_open_unix(src_image_socket(nd->img[i]), NULL, NULL, path,
						      &nd->conn[i]);
		} else if (src_nbd_is_uri(path)) {
			r = src_nbd_open(path, NULL, NULL, &nd->conn[i]);
		} else {
			continue;
		}
		if (r < 0) {
			if (!vbs_errmsg()[0])
				return store_err(r, "cannot read disk '%s'", a->disks[i].name);
			vbu_err("disk '%s': %s", a->disks[i].name, q(vbs_errmsg()));
			return VMBAK_EXIT_FAIL;
		}
		idisks[i].path = NULL;
		idisks[i].src = src_nbd_source(nd->conn[i]);
	}
	return 0;
}

/* --qemu: the VM's disks frozen at one instant (src_qemu.h), as the ingest's disks. Says on
 * stderr, one line per disk, why a disk is read in full when the VM has an earlier point. */
static int qemu_disks(const ingest_args *a, vbs_vault *v, src_qemu **ret_q,
		      vbs_ingest_disk **ret_disks, size_t *ret_n, char *ret_base)
{
	const char **names = calloc(a->n_disks + 1, sizeof(*names));
	const char **nodes = calloc(a->n_disks + 1, sizeof(*nodes));
	vbs_ingest_disk *d = NULL;
	vbs_rp *prev = NULL;
	src_qemu *qm = NULL;
	int r, status = VMBAK_EXIT_OK;

	if (!names || !nodes) {
		status = store_err(-ENOMEM, "cannot ingest VM '%s'", a->vm);
		goto out;
	}
	for (size_t i = 0; i < a->n_disks; i++) {
		names[i] = a->disks[i].name;
		nodes[i] = a->disks[i].path;
	}
	r = vbs_rp_latest(v, a->vm, &prev);
	if (r < 0 && r != -ENOENT) {
		status = store_err(r, "cannot read vault '%s'", q(a->path));
		goto out;
	}
	early_signals();
	vbu_clear_err();
	r = src_qemu_begin(a->qemu, names, nodes, a->n_disks, vbs_vault_uuid(v), prev, &qm);
	if (r < 0) {
		status = store_err(r, "cannot take the disks of QEMU at '%s'", q(a->qemu));
		goto out;
	}
	d = calloc(src_qemu_count(qm), sizeof(*d));
	if (!d) {
		status = store_err(-ENOMEM, "cannot ingest VM '%s'", a->vm);
		goto out;
	}
	for (size_t i = 0; i < src_qemu_count(qm); i++) {
		src_qemu_disk *qd = src_qemu_get(qm, i);

		d[i].name = qd->name;
		d[i].src = qd->src;
		d[i].changed_ext = qd->changed_ext;
		d[i].n_changed_ext = qd->n_changed_ext;
		d[i].read_note = qd->note;
		if (prev && !qd->changed_ext)
			vbu_err("disk '%s' of VM '%s' is read in full: %s", qd->name, a->vm,
				qd->note + (strncmp(qd->note, "full: ", 6) == 0 ? 6 : 0));
	}
	snprintf(ret_base, VBS_RP_ID_MAX, "%s", prev ? prev->id : "");
	*ret_q = qm;
	*ret_disks = d;
	*ret_n = src_qemu_count(qm);
	qm = NULL;
	d = NULL;
out:
	src_qemu_end(qm, NULL);
	free(d);
	vbs_rp_free(prev);
	free(names);
	free(nodes);
	return status;
}

/* The ingest of a checked command line: the escrowed secrets looked up, the vault opened and
 * unlocked, vbs_ingest() under a job record, the summary on stdout. An exit status. */
static int ingest_run(const ingest_args *a, vmbak_globals *g)
{
	vbs_ingest_disk *idisks = NULL;
	size_t i, j;
	progress prog = {0};
	vbs_ingest_opts opts = {0};
	vbs_vault *v = NULL;
	vbs_rp *rp = NULL;
	int r, status;
	vbk_kind *esc_kinds = NULL;
	const char **esc_disks = NULL, **esc_secrets = NULL;
	escrow_ctx *esc = NULL;
#ifdef VMBAK_TEST_HOOKS
	char *test_xml = NULL;
	size_t test_xml_len = 0;
#endif
	nbd_disks nd = {0};
	src_lv *lv = NULL;
	vbs_rp *prev = NULL;
	src_qemu *qm = NULL;
	size_t n_idisks = a->n_disks;
	char qemu_base[VBS_RP_ID_MAX] = "";

	idisks = calloc(a->n_disks ? a->n_disks : 1, sizeof(*idisks));
	if (!idisks) {
		status = store_err(-ENOMEM, "cannot ingest VM '%s'", a->vm);
		goto out;
	}
	for (i = 0; i < a->n_disks; i++) {
		idisks[i].name = a->disks[i].name;
		idisks[i].path = a->disks[i].path;
		for (j = 0; j < a->n_changed; j++)
			if (strcmp(a->changed[j].name, a->disks[i].name) == 0)
				idisks[i].changed = a->changed[j].path;
	}

	if (a->n_escrow > 0) {
		esc_disks = calloc(a->n_escrow, sizeof(*esc_disks));
		esc_secrets = calloc(a->n_escrow, sizeof(*esc_secrets));
		esc_kinds = calloc(a->n_escrow, sizeof(*esc_kinds));
		if (!esc_disks || !esc_secrets || !esc_kinds) {
			status = store_err(-ENOMEM, "cannot ingest VM '%s'", a->vm);
			goto out;
		}
		for (i = 0; i < a->n_escrow; i++) {
			esc_disks[i] = a->escrow[i].name;
			esc_secrets[i] = a->escrow[i].path;
			for (j = 0; j < a->n_kinds; j++)
				if (strcmp(a->kinds[j].name, a->escrow[i].name) == 0)
					vbk_kind_parse(a->kinds[j].path, &esc_kinds[i]);
		}
		/* Every secret and KEK is looked up now: a missing one stops the ingest before
		 * anything is read or stored. */
		status = escrow_setup(a->kv_path, a->kv_passfile, esc_disks, esc_secrets,
				      esc_kinds, a->n_escrow, a->check_escrow, &esc);
		if (status != 0)
			goto out;
	}

	if (!a->qemu && (status = nbd_disks_open(a, idisks, &nd)) != 0)
		goto out;
	/* Paths and NBD sources: each escrowed disk's header is read (and, with
	 * --check-escrow, checked) before the vault is opened. A VM's disks are read from the
	 * instant taken below. */
	if (!a->qemu && !a->libvirt && (status = escrow_headers(esc, idisks, a->n_disks, a->vm)))
		goto out;

	/* The changed extents start coming in from disk while the passphrase is stretched. */
	vbs_ingest_prefetch(idisks, a->n_disks);
	status =
	    vault_open(a->path, 0, VAULT_UNLOCK, verb_passphrase_file(a->passphrase_file, g), &v);
	if (status != 0)
		goto out;
	if (esc && (status = escrow_pin(esc, v, a->path)) != 0)
		goto out;
	if (a->qemu) {
		/* The instant is taken as late as it can be: after the vault is unlocked. */
		free(idisks);
		idisks = NULL;
		if ((status = qemu_disks(a, v, &qm, &idisks, &n_idisks, qemu_base)) != 0)
			goto out;
		/* The dirty extents are relative to that point: no other may come between. */
		opts.expect_base = qemu_base;
		/* The headers of the frozen exports: the bytes of the point's instant. */
		if ((status = escrow_headers(esc, idisks, n_idisks, a->vm)) != 0)
			goto out;
	}

	opts.vm = a->vm;
	opts.disks = idisks;
	opts.n_disks = n_idisks;
	if (a->libvirt) {
		/* The job starts once the vault is open: the checkpoints carry its id, and the
		 * VM's latest point says which checkpoint the changes are read from. */
		src_lv_opts lo = {.uri = a->connect, .domain = a->libvirt, .quiesce = a->quiesce,
				  .vm = a->vm, .vault_uuid = vbs_vault_uuid(v)};

		r = vbs_rp_latest(v, a->vm, &prev);
		if (r < 0 && r != -ENOENT) {
			status = store_err(r, "cannot read VM '%s' in vault '%s'", a->vm,
					   q(a->path));
			goto out;
		}
		lo.prev = r == 0 ? prev : NULL;
		status = src_lv_begin(&lo, &lv);
		if (status != 0)
			goto out;
		opts.disks = src_lv_disks(lv, &opts.n_disks);
		opts.source = src_lv_source(lv);
		/* The dirty extents are relative to that point: no other may come between. */
		opts.expect_base = src_lv_base_id(lv);
		opts.files[VBS_RP_DOMAIN_XML] = src_lv_domain_xml(lv);
		if ((status = escrow_headers(esc, opts.disks, opts.n_disks, a->vm)) != 0)
			goto out;
	}
	opts.retain_until = a->retain_until;
	opts.threads = a->threads;
	if (a->config) {
		opts.files[VBS_RP_CONFIG].data = (uint8_t *)a->config;
		opts.files[VBS_RP_CONFIG].len = a->config_len;
	}
	if (esc) {
		opts.escrow_disks = esc_disks;
		opts.n_escrow = a->n_escrow;
		opts.escrow = escrow_blob_cb;
		opts.escrow_arg = esc;
	}
#ifdef VMBAK_TEST_HOOKS
	/* Test build only: VMBAK_TEST_NOW=SECONDS sets the point's creation time (prune tests). */
	if (getenv("VMBAK_TEST_NOW"))
		opts.created_ns = strtoll(getenv("VMBAK_TEST_NOW"), NULL, 10) * 1000000000;
	/* VMBAK_TEST_DOMAIN_XML=FILE keeps FILE as the point's domain.xml, as --libvirt does:
	 * restore's tests make such points without a libvirtd. */
	if (getenv("VMBAK_TEST_DOMAIN_XML")) {
		status = read_config(getenv("VMBAK_TEST_DOMAIN_XML"), &test_xml, &test_xml_len);
		if (status != 0)
			goto out;
		opts.files[VBS_RP_DOMAIN_XML].data = (uint8_t *)test_xml;
		opts.files[VBS_RP_DOMAIN_XML].len = test_xml_len;
	}
#endif
	status = cli_job_start(v, "ingest", a->vm, &opts.job_id);
	if (status != 0)
		goto out;
	if (a->show_progress || isatty(STDERR_FILENO)) {
		prog.vm = a->vm;
		prog.start_ns = vbu_mono_ns();
		opts.progress = progress_cb;
		opts.progress_arg = &prog;
	}
	r = vbs_ingest(v, &opts, &rp);
	progress_end(&prog, r >= 0);
	if (lv) {
		/* After the commit (or the failure): the checkpoints move on only with a point. */
		char keep[VBU_ERRMSG_MAX];

		snprintf(keep, sizeof(keep), "%s", vbs_errmsg());
		src_lv_end(lv, r >= 0);
		lv = NULL;
		if (r < 0 && keep[0])
			vbu_fail(r, "%s", keep);
	}
	if (qm) {
		/* After the commit (or the failure): the bitmaps move on only with a point. */
		char keep[VBU_ERRMSG_MAX];
		int qr;

		snprintf(keep, sizeof(keep), "%s", vbs_errmsg());
		qr = src_qemu_end(qm, r >= 0 ? rp->id : NULL);
		qm = NULL;
		if (qr < 0 && r >= 0)
			vbu_err("warning: %s; the next point of VM '%s' reads its disks in full",
				q(vbu_errmsg()), a->vm);
		if (r < 0 && keep[0])
			vbu_fail(r, "%s", keep);
		else
			vbu_clear_err();
	}
	if (r < 0) {
		status = escrow_report(esc);
		if (status == 0)
			status = store_err(r, "cannot ingest VM '%s' into vault '%s'", a->vm,
					   q(a->path));
		cli_job_finish(v, opts.job_id, status, 0, 0, NULL);
		goto out;
	}
	{
		uint64_t rd = 0, st = 0;
		for (i = 0; i < rp->n_disks; i++) {
			rd += rp->disks[i].read_bytes;
			st += rp->disks[i].new_bytes;
		}
		cli_job_finish(v, opts.job_id, 0, rd, st, NULL);
	}

	{
		uint64_t size = 0, read = 0, new_chunks = 0, new_bytes = 0;
		char h1[HUMAN_SIZE_LEN], h2[HUMAN_SIZE_LEN], h3[HUMAN_SIZE_LEN];

		for (i = 0; i < rp->n_disks; i++) {
			size += rp->disks[i].size;
			read += rp->disks[i].read_bytes;
			new_chunks += rp->disks[i].new_chunks;
			new_bytes += rp->disks[i].new_bytes;
		}
		printf("%s: %zu disk%s, %s, %s read, %llu new chunk%s (%s stored)\n", rp->vm,
		       rp->n_disks, rp->n_disks == 1 ? "" : "s", human_size(size, h1),
		       human_size(read, h2), (unsigned long long)new_chunks,
		       new_chunks == 1 ? "" : "s", human_size(new_bytes, h3));
		printf("%s\n", rp->id);
	}
	status = VMBAK_EXIT_OK;
out:
	src_lv_end(lv, 0);
	vbs_rp_free(prev);
	src_qemu_end(qm, NULL);
	nbd_disks_close(&nd);
	vbs_rp_free(rp);
	vbs_vault_close(v);
	free(idisks);
	escrow_ctx_free(esc);
	free(esc_disks);
	free(esc_secrets);
	free(esc_kinds);
#ifdef VMBAK_TEST_HOOKS
	free(test_xml);
#endif
	return status;
}

static int cmd_ingest(verb_ctx *c)
{
	return ingest_run(c->opts, c->g);
}

static void ingest_done(verb_ctx *c)
{
	ingest_args_free(c->opts);
}

static const char *const ingest_arg_names[] = {"VAULT", "VM"};

const vmbak_cmd cmd_ingest_def = {
    .name = "ingest",
    .summary = "take a recovery point of a VM's disks",
    .help = ingest_help,
    .usage = INGEST_USAGE,
    .arg_names = ingest_arg_names,
    .min_args = 2,
    .max_args = 2,
    .flags = VERB_VAULT_ARG | VERB_PASSPHRASE_FILE,
    .options = ingest_options,
    .opts_size = sizeof(ingest_args),
    .option = ingest_option,
    .check = ingest_validate,
    .run = cmd_ingest,
    .done = ingest_done,
};
