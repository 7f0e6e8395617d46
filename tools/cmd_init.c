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
	"vmbak init VAULT [--encryption aes-256-gcm|none] [--chunk-size BYTES] [--dedup-scope vault|vm]"

static const char init_help[] =
    "usage: " INIT_USAGE "\n"
    "       vmbak init VAULT --replica-of SRC\n"
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
    "  --passphrase-file F     read the new passphrase from the first line of F\n"
    "  --replica-of SRC        make VAULT a replica of the vault SRC (its directory, or a\n"
    "                          copy of its vmbak-vault.json), to receive its points with\n"
    "                          vmbak sync: it shares SRC's uuid, chunk size and keys (SRC's\n"
    "                          passphrases open it); no passphrase is asked, and the other\n"
    "                          options do not apply\n"
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
	OPT_PASSPHRASE_FILE,
	OPT_DEDUP_SCOPE,
	OPT_REPLICA_OF
};

static int cmd_init(int argc, char **argv, vmbak_globals *g)
{
	static const struct option longopts[] = {
	    {"encryption", required_argument, NULL, OPT_ENCRYPTION},
	    {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
	    {"dedup-scope", required_argument, NULL, OPT_DEDUP_SCOPE},
	    {"replica-of", required_argument, NULL, OPT_REPLICA_OF},
	    {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},
	    {"passphrase", required_argument, NULL, OPT_PASSPHRASE_REFUSED},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const names[] = {"VAULT"};
	vbs_init_opts opts = {.encrypt = 1, .chunk_size = VBS_CHUNK_SIZE_DEFAULT};
	const char *passphrase_file = NULL, *path, *replica_of = NULL;
	int other = 0;
	char *pass = NULL;
	char hs[HUMAN_SIZE_LEN];
	int opt, state = 0, r, status;

	while ((opt = verb_getopt(argc, argv, ":h", longopts, &state)) != -1) {
		switch (opt) {
		case 'h':
			fputs(init_help, stdout);
			return VMBAK_EXIT_OK;
		case OPT_ENCRYPTION:
			other = 1;
			if (strcmp(optarg, "aes-256-gcm") == 0)
				opts.encrypt = 1;
			else if (strcmp(optarg, "none") == 0)
				opts.encrypt = 0;
			else
				return usage_err("invalid encryption '%s': use aes-256-gcm or none",
						 q(optarg));
			break;
		case OPT_REPLICA_OF:
			replica_of = optarg;
			break;
		case OPT_CHUNK_SIZE:
			other = 1;
			r = parse_chunk_size(optarg, &opts.chunk_size);
			if (r != 0)
				return r;
			break;
		case OPT_DEDUP_SCOPE:
			other = 1;
			if (strcmp(optarg, "vault") == 0)
				opts.dedup_vm = 0;
			else if (strcmp(optarg, "vm") == 0)
				opts.dedup_vm = 1;
			else
				return usage_err("invalid dedup scope '%s': use vault or vm", q(optarg));
			break;
		case OPT_PASSPHRASE_FILE:
			r = passphrase_file_arg(optarg, &passphrase_file);
			if (r != 0)
				return r;
			break;
		case OPT_PASSPHRASE_REFUSED:
			return passphrase_option_refused();
		default:
			return VMBAK_EXIT_USAGE;
		}
	}
	r = check_nargs(INIT_USAGE, names, 1, 1, argc - optind, argv + optind);
	if (r != 0)
		return r;
	path = argv[optind];
	r = check_vault_arg(path);
	if (r != 0)
		return r;
	if (opts.dedup_vm && !opts.encrypt)
		return usage_err("--dedup-scope vm needs an encrypted vault: without encryption "
				 "nothing is kept from the other VMs' owners anyway");

	if (replica_of) {
		if (other || passphrase_file)
			return usage_err("--replica-of takes the source's encryption, chunk size, "
					 "dedup scope and keys: give no other option");
		r = check_vault_arg(replica_of);
		if (r != 0)
			return r;
	}
	status = check_target(path);
	if (status != 0)
		goto out;
	if (replica_of) {
		r = vbs_vault_init_replica(path, replica_of);
		if (r < 0) {
			status = store_err(r, "cannot create replica '%s'", q(path));
			goto out;
		}
		printf("replica created: %s (of %s)\n", path, replica_of);
		status = VMBAK_EXIT_OK;
		goto out;
	}
	if (opts.encrypt) {
		status = passphrase_for(path, verb_passphrase_file(passphrase_file, g), 1, &pass);
		if (status != 0)
			goto out;
	}
	r = vbs_vault_init(path, &opts, pass);
	if (r < 0) {
		status = store_err(r, "cannot create vault '%s'", q(path));
		goto out;
	}
	printf("vault created: %s (%s, chunk size %s%s)\n", path,
	       opts.encrypt ? "aes-256-gcm" : "none", human_size(opts.chunk_size, hs),
	       opts.dedup_vm ? ", dedup scope vm" : "");
	status = VMBAK_EXIT_OK;
out:
	vbk_passphrase_free(pass);
	return status;
}

const vmbak_cmd cmd_init_def = {
    .name = "init",
    .summary = "create a vault",
    .help = init_help,
    .run = cmd_init,
};
