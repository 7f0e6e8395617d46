/* cmd_rewrap.c: vmbak rewrap, re-wrapping the escrow blobs of a vault under another KEK
 * version.
 *
 * A rewrap never touches chunks: each point's blobs are unwrapped with the key vault's
 * passphrase, wrapped again (keyvault/escrow.h: vbk_escrow_rewrap) and replaced in the point's
 * record in one commit (store/rewrap.h). Points are done one by one, each committed on its own:
 * an interrupted rewrap leaves some points rewrapped and the others as they were, and running
 * it again finishes the job (blobs already under the target version are left alone). Every
 * point rewrapped, and every failure, is a line in the key vault's audit log.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "common.h"
#include "escrow.h"
#include "escrow_tools.h"
#include "hdrcheck.h"
#include "image.h"
#include "kv.h"
#include "rewrap.h"
#include "rp.h"
#include "util.h"
#include "vault.h"

#define REWRAP_USAGE "vmbak rewrap VAULT --keyvault KV [--from KEK[/VERSION]] [--to KEK] [VM[/RP]]"

static const char rewrap_help[] =
    "usage: " REWRAP_USAGE "\n"
    "\n"
    "Wraps the escrow blobs (DISK.key) of every recovery point of VAULT, or of the VM VM, or\n"
    "of its point RP (VM/latest: its newest), again: under the current version of KEK --to,\n"
    "or by default under the current version of the blob's own KEK. Each blob is unwrapped\n"
    "with the passphrase of key vault KV, so the secret it holds is checked on the way; the\n"
    "new blob names the same VM, disk, point, kind and secret version. Chunks are not\n"
    "touched. The blobs of one point are replaced in one commit; a blob already under the\n"
    "target version is left as it is, so an interrupted rewrap is finished by running it\n"
    "again. Afterwards the old KEK version can be retired ('vmbak keyvault key retire KV\n"
    "KEK/VERSION --vault VAULT'), and the old points still restore.\n"
    "\n"
    "options:\n"
    "  --keyvault KV           the key vault the blobs belong to (blobs of other key vaults\n"
    "                          are left alone)\n"
    "  --from KEK[/VERSION]    only blobs wrapped by KEK (by that version of it)\n"
    "  --to KEK                wrap with the current version of KEK (it must be enabled)\n"
    "  --keyvault-passphrase-file F  read the key vault passphrase from the first line of F\n"
    "                          (else VMBAK_KEYVAULT_PASSPHRASE_FILE, VMBAK_KEYVAULT_PASSPHRASE,\n"
    "                          the terminal)\n"
    "  --passphrase-file F     read the vault passphrase from the first line of F\n"
    "  -h, --help              show this help\n"
    "\n"
    "Output: one line per blob rewrapped, then a summary line. Every point rewrapped (and\n"
    "every failure) is logged in the key vault's audit log. exit status: 0 done, 1 failure\n"
    "(one line on stderr; points rewrapped before it stay rewrapped), 2 usage error.\n";

/* ---- rewrap ---- */

typedef struct rewrap_opts {
	const char *from_kek;  /* NULL: any */
	uint32_t from_version; /* 0: any */
	const char *to;	       /* NULL: the blob's own KEK */
} rewrap_opts;

typedef struct rewrap_count {
	uint64_t points, blobs, current, skipped;
} rewrap_count;

/* Logs one blob's rewrap (or a failure). 0, or -errno with vbk_kv_errmsg() set. */
static int audit_rewrap(vbk_kv *kv, const vbs_rp *rp, const vbk_escrow_info *o,
			const vbk_escrow_info *n, int err, const char *msg)
{
	char detail[512];
	vbk_audit_event ev = {.op = "rewrap",
			      .key = n && n->kek[0] ? n->kek : (o ? o->kek : NULL),
			      .version = n ? n->kek_version : 0,
			      .secret = o ? o->secret : NULL,
			      .secret_version = o ? o->secret_version : 0,
			      .detail = detail,
			      .result = err,
			      .error = msg};

	if (o && n)
		snprintf(detail, sizeof(detail), "%s/%s disk %s: key %s/%u -> %s/%u", rp->vm,
			 rp->id, o->disk, o->kek[0] ? o->kek : "(none)", o->kek_version, n->kek,
			 n->kek_version);
	else
		snprintf(detail, sizeof(detail), "%s/%s", rp->vm, rp->id);
	return vbk_audit_append(kv, &ev);
}

/* Rewraps the blobs of one point; prints a line per blob. Exit status. */
static int rewrap_point(vbs_vault *v, vbk_kv *kv, const vbs_rp *rp, const rewrap_opts *o,
			rewrap_count *c)
{
	vbs_escrow_change ch[VBS_DISKS_MAX];
	vbk_escrow_info old[VBS_DISKS_MAX], nw[VBS_DISKS_MAX];
	size_t n = 0;
	int r, status = 0;

	for (unsigned d = 0; d < rp->n_disks && d < VBS_DISKS_MAX; d++) {
		const vbs_disk *disk = &rp->disks[d];
		vbk_escrow_info info;
		char *blob = NULL;
		size_t len = 0;

		if (!disk->escrow)
			continue;
		r = vbk_escrow_parse(disk->escrow, disk->escrow_len, &info);
		if (r < 0) {
			char msg[600];

			snprintf(msg, sizeof(msg), "%s", vbk_kv_errmsg());
			vbu_err("escrow blob of %s/%s disk '%s' is not an escrow blob: %s",
				q(rp->vm), q(rp->id), q(disk->name), q(msg));
			audit_rewrap(kv, rp, NULL, NULL, r, msg);
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		if (strcmp(info.keyvault, vbk_kv_id(kv)) != 0 ||
		    (o->from_kek && strcmp(info.kek, o->from_kek) != 0) ||
		    (o->from_version && info.kek_version != o->from_version) ||
		    (!o->to && !info.kek[0])) {
			c->skipped++;
			continue;
		}
		r = vbk_escrow_rewrap(kv, disk->escrow, disk->escrow_len, o->to, &old[n], &nw[n],
				      &blob, &len);
		if (r == -EALREADY) {
			c->current++;
			continue;
		}
		if (r < 0) {
			char msg[600];

			snprintf(msg, sizeof(msg), "%s", vbk_kv_errmsg());
			vbu_err("cannot rewrap the escrow of %s/%s disk '%s': %s", q(rp->vm),
				q(rp->id), q(disk->name), q(msg));
			audit_rewrap(kv, rp, &info, NULL, r, msg);
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		ch[n] = (vbs_escrow_change){.disk = d,
					    .old = disk->escrow,
					    .old_len = disk->escrow_len,
					    .blob = blob,
					    .blob_len = len};
		n++;
	}
	if (n == 0)
		goto out;
	/* Logged before the commit, so that no rewrap happens unlogged; a commit that then fails
	 * is logged as failed. */
	for (size_t i = 0; i < n; i++) {
		if (audit_rewrap(kv, rp, &old[i], &nw[i], 0, NULL) < 0) {
			vbu_err("cannot rewrap the escrow of %s/%s: %s", q(rp->vm), q(rp->id),
				q(vbk_kv_errmsg()));
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
	}
	r = vbs_rp_rewrap(v, rp->serial, rp->vm, rp->id, ch, n);
	if (r < 0) {
		char msg[600];

		status = store_err(r, "cannot rewrap the escrow of %s/%s", q(rp->vm), q(rp->id));
		snprintf(msg, sizeof(msg), "not committed: %s",
			 *vbs_errmsg() ? vbs_errmsg() : vbu_strerror(-r));
		for (size_t i = 0; i < n; i++)
			audit_rewrap(kv, rp, &old[i], &nw[i], r, msg);
		goto out;
	}
	c->points++;
	for (size_t i = 0; i < n; i++) {
		c->blobs++;
		printf("%s/%s %s: key '%s' version %u -> key '%s' version %u\n", q(rp->vm),
		       q(rp->id), q(old[i].disk), old[i].kek[0] ? old[i].kek : "(none)",
		       old[i].kek_version, nw[i].kek, nw[i].kek_version);
	}
out:
	for (size_t i = 0; i < n; i++)
		free((char *)ch[i].blob);
	return status;
}

/* --from KEK[/VERSION] */
static int parse_from(const char *s, char *name, uint32_t *version)
{
	const char *slash = strchr(s, '/');
	size_t nl = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long x;
	char *end;

	if (nl == 0 || nl > VBK_KV_NAME_MAX)
		return usage_err(
		    "invalid --from '%s': use KEK or KEK/VERSION, KEK " VBK_KV_NAME_RULE, q(s));
	memcpy(name, s, nl);
	name[nl] = '\0';
	if (!vbu_name_valid(name))
		return usage_err(
		    "invalid --from '%s': use KEK or KEK/VERSION, KEK " VBK_KV_NAME_RULE, q(s));
	*version = 0;
	if (!slash)
		return 0;
	errno = 0;
	x = strtoul(slash + 1, &end, 10);
	if (!(slash[1] >= '1' && slash[1] <= '9') || *end || errno || x > UINT32_MAX)
		return usage_err("invalid --from '%s': the version is a number from 1", q(s));
	*version = (uint32_t)x;
	return 0;
}

enum { OPT_KEYVAULT = 0x100, OPT_FROM, OPT_TO, OPT_KV_PASSFILE };

typedef struct rewrap_args {
	const char *kv_path, *kv_passfile, *from;
	char vm[VBS_NAME_MAX + 1], id[VBS_RP_ID_MAX], from_name[VBK_KV_NAME_MAX + 1];
	const char *sel_vm, *sel_id;
	rewrap_opts o;
} rewrap_args;

static const struct option rewrap_options[] = {
    {"keyvault", required_argument, NULL, OPT_KEYVAULT},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"keyvault-passphrase-file", required_argument, NULL, OPT_KV_PASSFILE},
    {NULL, 0, NULL, 0},
};

static int rewrap_option(verb_ctx *c, int opt, const char *arg)
{
	rewrap_args *a = c->opts;

	switch (opt) {
	case OPT_KEYVAULT:
		if (!*arg)
			return usage_err("empty argument for '--keyvault'");
		a->kv_path = arg;
		break;
	case OPT_FROM:
		a->from = arg;
		break;
	case OPT_TO:
		if (!vbu_name_valid(arg))
			return usage_err("invalid --to '%s': a KEK name, " VBK_KV_NAME_RULE,
					 q(arg));
		a->o.to = arg;
		break;
	case OPT_KV_PASSFILE:
		if (!*arg)
			return usage_err("empty file name for --keyvault-passphrase-file");
		a->kv_passfile = arg;
		break;
	default:
		return VMBAK_EXIT_USAGE;
	}
	return 0;
}

static int rewrap_check(verb_ctx *c)
{
	rewrap_args *a = c->opts;
	int status;

	if (!a->kv_path)
		return usage_err("rewrap needs --keyvault KV (usage: %s)", REWRAP_USAGE);
	if (a->from) {
		if ((status = parse_from(a->from, a->from_name, &a->o.from_version)) != 0)
			return status;
		a->o.from_kek = a->from_name;
	}
	if (c->nargs > 1) {
		const char *target = c->args[1];

		if ((status = check_point_arg(target, 0, REWRAP_USAGE, a->vm, a->id)) != 0)
			return status;
		a->sel_vm = a->vm;
		if (strchr(target, '/'))
			a->sel_id = a->id[0] ? a->id : "latest";
	}
	return 0;
}

/* The vault is opened here, not by verb_main(): the key vault first, so that its names are
 * checked before the vault is touched. */
static int cmd_rewrap(verb_ctx *ctx)
{
	rewrap_args *a = ctx->opts;
	const char *path = ctx->args[0], *kv_path = a->kv_path;
	rewrap_opts o = a->o;
	rewrap_count c = {0};
	vbk_kv *kv = NULL;
	vbs_vault *v = NULL;
	vbs_rp **list = NULL;
	size_t np = 0;
	int status;

	/* The key vault first: its names are checked before the vault is touched. */
	if ((status = escrow_kv_open(kv_path, 1, a->kv_passfile, &kv)) != 0)
		goto out;
	if (o.to) {
		vbk_key_info *keys = NULL;
		size_t nk = 0, i;
		int r = vbk_kv_keys(kv, &keys, &nk);

		for (i = 0; r == 0 && i < nk; i++)
			if (strcmp(keys[i].name, o.to) == 0)
				break;
		if (r == 0 && i == nk) {
			vbu_err("no key '%s' in key vault '%s'", q(o.to), q(kv_path));
			status = VMBAK_EXIT_FAIL;
		} else if (r == 0 &&
			   vbk_kv_key_usable(kv, o.to, (uint32_t)keys[i].n_versions, 1) < 0) {
			vbu_err("%s", q(vbk_kv_errmsg()));
			status = VMBAK_EXIT_FAIL;
		} else if (r < 0) {
			vbu_err("%s", q(vbk_kv_errmsg()));
			status = VMBAK_EXIT_FAIL;
		}
		vbk_key_list_free(keys, nk);
		if (status != 0)
			goto out;
	}
	if (o.from_kek &&
	    vbk_kv_key_usable(kv, o.from_kek, o.from_version ? o.from_version : 1, 0) == -ENOENT) {
		vbu_err("%s", q(vbk_kv_errmsg()));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if ((status = vault_open(path, 0, 0, ctx->passphrase_file, &v)) != 0)
		goto out;
	if ((status = escrow_select_points(v, path, a->sel_vm, a->sel_id, &list, &np)) != 0)
		goto out;
	for (size_t i = 0; i < np && status == 0; i++)
		status = rewrap_point(v, kv, list[i], &o, &c);
	printf("rewrap: %llu blob%s in %llu point%s rewrapped, %llu already current, %llu left "
	       "alone (other KEK or key vault)%s\n",
	       (unsigned long long)c.blobs, c.blobs == 1 ? "" : "s", (unsigned long long)c.points,
	       c.points == 1 ? "" : "s", (unsigned long long)c.current,
	       (unsigned long long)c.skipped, status ? " before the failure" : "");
	status = finish_stdout(status);
out:
	vbs_rp_list_free(list, np);
	vbs_vault_close(v);
	vbk_kv_close(kv);
	return status;
}

static const char *const rewrap_args_names[] = {"VAULT", "VM"};

const vmbak_cmd cmd_rewrap_def = {
    .name = "rewrap",
    .summary = "wrap escrowed keys again under another KEK version",
    .help = rewrap_help,
    .usage = REWRAP_USAGE,
    .arg_names = rewrap_args_names,
    .min_args = 1,
    .max_args = 2,
    .flags = VERB_VAULT_ARG | VERB_PASSPHRASE_FILE,
    .options = rewrap_options,
    .opts_size = sizeof(rewrap_args),
    .option = rewrap_option,
    .check = rewrap_check,
    .run = cmd_rewrap,
};
