/* cmd_init.c: vmbak init, creating a vault. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "passphrase.h"
#include "util.h"
#include "vault.h"

#define INIT_USAGE                                                                                 \
	"vmbak init VAULT [--encryption aes-256-gcm|none] [--chunk-size BYTES] [--dedup-scope "    \
	"vault|vm] [--chunks lmdb|rados:POOL [--ceph-conf FILE] [--ceph-id NAME] "                 \
	"[--ceph-namespace NS]]"

static const char init_help[] =
    "usage: " INIT_USAGE "\n"
    "       vmbak init VAULT --replica-of SRC [--chunks lmdb|rados:POOL [--ceph-conf FILE]\n"
    "                  [--ceph-id NAME] [--ceph-namespace NS]]\n"
    "\n"
    "Creates a vault in the directory VAULT, which must not exist (its parent must)\n"
    "or be empty.\n"
    "\n"
    "options:\n"
    "  --encryption aes-256-gcm|none\n"
    "                          encrypt chunks with AES-256-GCM under keys wrapped by the\n"
    "                          vault passphrase (default), or store them unencrypted\n"
    "                          (still checked on every read)\n"
    "  --chunk-size BYTES      a power of two from 4K to 4M (default 64K); suffixes K, M\n"
    "  --dedup-scope vault|vm  deduplicate across the whole vault (default), or only within\n"
    "                          each VM, so that VMs of different owners sharing a vault cannot\n"
    "                          learn whether another VM holds a given chunk (encrypted vaults)\n"
    "  --chunks lmdb|rados:POOL\n"
    "                          where chunk frames live: in the vault's LMDB file (default),\n"
    "                          or as objects of the Ceph RADOS pool POOL (which must exist);\n"
    "                          indexes and recovery points stay in the vault directory\n"
    "  --ceph-conf FILE        the ceph config to connect with (default: librados's search,\n"
    "                          /etc/ceph/ceph.conf); its rados_osd_op_timeout and\n"
    "                          rados_mon_op_timeout bound every request (10 s when unset)\n"
    "  --ceph-id NAME          the ceph client to connect as (default: admin)\n"
    "  --ceph-namespace NS     the RADOS namespace of this vault's objects (default: the\n"
    "                          vault's uuid, a replica's site uuid), so that vaults can\n"
    "                          share a pool\n"
    "  --passphrase-file F     read the new passphrase from the first line of F\n"
    "  --replica-of SRC        make VAULT a replica of the vault SRC (its directory, or a\n"
    "                          copy of its vmbak-vault.json), to receive its points with\n"
    "                          vmbak sync: it shares SRC's uuid, chunk size and keys (SRC's\n"
    "                          passphrases open it); no passphrase is asked. Its chunks are\n"
    "                          its own, whatever SRC's: --chunks and the ceph options as\n"
    "                          above (never SRC's pool and namespace); the other options\n"
    "                          do not apply\n"
    "  -h, --help              show this help\n"
    "\n"
    "The passphrase comes from --passphrase-file, VMBAK_PASSPHRASE_FILE, VMBAK_PASSPHRASE,\n"
    "or is asked twice on the terminal. It is never given on the command line.\n";

/* Whether path can become a vault, checked before asking for a passphrase; vbs_vault_init()
 * checks again (this is for a quick, clear answer, not for safety). */
static int check_target(const char *path)
{
	struct stat st;
	struct dirent *de;
	DIR *d = NULL;
	char parent[PATH_MAX];
	char *slash;
	int n, status = VMBAK_EXIT_FAIL;

	if (stat(path, &st) < 0) {
		if (errno != ENOENT) {
			vbu_errno(-errno, "cannot create vault '%s'", q(path));
			goto out;
		}
		n = snprintf(parent, sizeof(parent), "%s", path);
		if (n < 0 || (size_t)n >= sizeof(parent)) {
			vbu_errno(-ENAMETOOLONG, "cannot create vault '%s'", q(path));
			goto out;
		}
		/* The parent: dirname() without its surprises on trailing slashes. */
		while (n > 1 && parent[n - 1] == '/')
			parent[--n] = '\0';
		slash = strrchr(parent, '/');
		if (!slash)
			snprintf(parent, sizeof(parent), ".");
		else if (slash == parent)
			parent[1] = '\0';
		else
			*slash = '\0';
		if (stat(parent, &st) < 0) {
			vbu_errno(-errno, "cannot create vault '%s'", q(path));
			goto out;
		}
		if (!S_ISDIR(st.st_mode)) {
			vbu_errno(-ENOTDIR, "cannot create vault '%s'", q(path));
			goto out;
		}
		status = VMBAK_EXIT_OK;
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		vbu_err("cannot create vault '%s': a file of that name exists", q(path));
		goto out;
	}
	d = opendir(path);
	if (!d) {
		vbu_errno(-errno, "cannot create vault '%s'", q(path));
		goto out;
	}
	errno = 0;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), VBS_CONFIG_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0)
			vbu_err("cannot create vault '%s': it is already a vault", q(path));
		else
			vbu_err("cannot create vault '%s': the directory is not empty", q(path));
		goto out;
	}
	if (errno) {
		vbu_errno(-errno, "cannot create vault '%s'", q(path));
		goto out;
	}
	status = VMBAK_EXIT_OK;
out:
	if (d)
		closedir(d);
	return status;
}

static int parse_chunk_size(const char *s, uint32_t *ret)
{
	uint64_t n;

	if (vbu_parse_size(s, &n) < 0 || n < VBS_CHUNK_SIZE_MIN || n > VBS_CHUNK_SIZE_MAX ||
	    (n & (n - 1)) != 0)
		return usage_err("invalid chunk size '%s': use a power of two from %uK to %uM",
				 q(s), VBS_CHUNK_SIZE_MIN / 1024,
				 VBS_CHUNK_SIZE_MAX / (1024 * 1024));
	*ret = (uint32_t)n;
	return 0;
}

enum {
	OPT_ENCRYPTION = 0x100,
	OPT_CHUNK_SIZE,
	OPT_DEDUP_SCOPE,
	OPT_CHUNKS,
	OPT_CEPH_CONF,
	OPT_CEPH_ID,
	OPT_CEPH_NS,
	OPT_REPLICA_OF,
};

/* The options, as given: zero is the default (encrypted, VBS_CHUNK_SIZE_DEFAULT, scope vault). */
typedef struct init_args {
	int plain; /* --encryption none */
	uint32_t chunk_size;
	int dedup_vm;
	const char *rados_pool, *ceph_conf, *ceph_id, *rados_ns; /* --chunks rados:POOL... */
	const char *replica_of; /* --replica-of SRC */
	int other;		/* an option --replica-of does not go with (not --chunks...) */
} init_args;

static const struct option init_options[] = {
    {"encryption", required_argument, NULL, OPT_ENCRYPTION},
    {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
    {"dedup-scope", required_argument, NULL, OPT_DEDUP_SCOPE},
    {"chunks", required_argument, NULL, OPT_CHUNKS},
    {"ceph-conf", required_argument, NULL, OPT_CEPH_CONF},
    {"ceph-id", required_argument, NULL, OPT_CEPH_ID},
    {"ceph-namespace", required_argument, NULL, OPT_CEPH_NS},
    {"replica-of", required_argument, NULL, OPT_REPLICA_OF},
    {NULL, 0, NULL, 0},
};

static int init_option(verb_ctx *c, int opt, const char *arg)
{
	init_args *a = c->opts;

	if (opt == OPT_REPLICA_OF) {
		a->replica_of = arg;
		return 0;
	}
	if (opt != OPT_CHUNKS && opt != OPT_CEPH_CONF && opt != OPT_CEPH_ID && opt != OPT_CEPH_NS)
		a->other = 1;
	switch (opt) {
	case OPT_ENCRYPTION:
		if (strcmp(arg, "aes-256-gcm") == 0)
			a->plain = 0;
		else if (strcmp(arg, "none") == 0)
			a->plain = 1;
		else
			return usage_err("invalid encryption '%s': use aes-256-gcm or none",
					 q(arg));
		return 0;
	case OPT_CHUNK_SIZE:
		return parse_chunk_size(arg, &a->chunk_size);
	case OPT_DEDUP_SCOPE:
		if (strcmp(arg, "vault") == 0)
			a->dedup_vm = 0;
		else if (strcmp(arg, "vm") == 0)
			a->dedup_vm = 1;
		else
			return usage_err("invalid dedup scope '%s': use vault or vm", q(arg));
		return 0;
	case OPT_CHUNKS:
		if (strcmp(arg, "lmdb") == 0)
			a->rados_pool = NULL;
		else if (strncmp(arg, "rados:", 6) == 0 && arg[6])
			a->rados_pool = arg + 6;
		else
			return usage_err("invalid chunk store '%s': use lmdb or rados:POOL", q(arg));
		return 0;
	case OPT_CEPH_CONF:
		a->ceph_conf = arg;
		return 0;
	case OPT_CEPH_ID:
		a->ceph_id = arg;
		return 0;
	case OPT_CEPH_NS:
		a->rados_ns = arg;
		return 0;
	default:
		return VMBAK_EXIT_USAGE;
	}
}

static int init_check(verb_ctx *c)
{
	init_args *a = c->opts;

	if (!a->rados_pool && (a->ceph_conf || a->ceph_id || a->rados_ns))
		return usage_err("--ceph-conf, --ceph-id and --ceph-namespace go with --chunks "
				 "rados:POOL");
	if (a->replica_of) {
		if (a->other || c->passphrase_opt)
			return usage_err("--replica-of takes the source's encryption, chunk size, "
					 "dedup scope and keys: give none of those options");
		return check_vault_arg(a->replica_of);
	}
	if (a->dedup_vm && a->plain)
		return usage_err("--dedup-scope vm needs an encrypted vault: without encryption "
				 "nothing is kept from the other VMs' owners anyway");
	return 0;
}

static int cmd_init(verb_ctx *c)
{
	init_args *a = c->opts;
	vbs_init_opts opts = {.encrypt = !a->plain,
			      .chunk_size = a->chunk_size ? a->chunk_size : VBS_CHUNK_SIZE_DEFAULT,
			      .dedup_vm = a->dedup_vm,
			      .rados_pool = a->rados_pool,
			      .ceph_conf = a->ceph_conf,
			      .ceph_id = a->ceph_id,
			      .rados_ns = a->rados_ns};
	const char *path = c->args[0];
	char *pass = NULL;
	char hs[HUMAN_SIZE_LEN];
	int r, status;

	status = check_target(path);
	if (status != 0)
		goto out;
	if (a->replica_of) {
		r = vbs_vault_init_replica(path, a->replica_of, &opts);
		if (r < 0) {
			status = store_err(r, "cannot create replica '%s'", q(path));
			goto out;
		}
		printf("replica created: %s (of %s%s%s)\n", path, a->replica_of,
		       opts.rados_pool ? ", chunks in ceph pool " : "",
		       opts.rados_pool ? opts.rados_pool : "");
		status = VMBAK_EXIT_OK;
		goto out;
	}
	if (opts.encrypt) {
		status = passphrase_for(path, c->passphrase_file, 1, &pass);
		if (status != 0)
			goto out;
	}
	r = vbs_vault_init(path, &opts, pass);
	if (r < 0) {
		status = store_err(r, "cannot create vault '%s'", q(path));
		goto out;
	}
	printf("vault created: %s (%s, chunk size %s%s%s%s)\n", path,
	       opts.encrypt ? "aes-256-gcm" : "none", human_size(opts.chunk_size, hs),
	       opts.dedup_vm ? ", dedup scope vm" : "", opts.rados_pool ? ", chunks in ceph pool " : "",
	       opts.rados_pool ? opts.rados_pool : "");
	status = VMBAK_EXIT_OK;
out:
	vbk_passphrase_free(pass);
	return status;
}

static const char *const init_arg_names[] = {"VAULT"};

const vmbak_cmd cmd_init_def = {
    .name = "init",
    .summary = "create a vault",
    .help = init_help,
    .usage = INIT_USAGE,
    .arg_names = init_arg_names,
    .min_args = 1,
    .max_args = 1,
    .flags = VERB_VAULT_ARG | VERB_PASSPHRASE_FILE,
    .options = init_options,
    .opts_size = sizeof(init_args),
    .option = init_option,
    .check = init_check,
    .run = cmd_init,
};
