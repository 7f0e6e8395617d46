/* cmd_upgrade.c: vmbak upgrade, a vault of an older format rewritten as the current one. */
#include <errno.h>
#include <stdio.h>

#include "common.h"
#include "upgrade.h"
#include "util.h"
#include "vault.h"

#define UPGRADE_USAGE "vmbak upgrade VAULT"

static const char upgrade_help[] =
    "usage: " UPGRADE_USAGE "\n"
    "\n"
    "Rewrites a vault made by an older vmbak (format 1) in the current format (2): every\n"
    "record sealed (authenticated and encrypted) under the vault's keys, names replaced by\n"
    "keyed hashes, each disk of each point bound to its index, the config bound to the keys.\n"
    "Chunks are not touched. Run it once, with nothing else using the vault; a run cut short\n"
    "leaves the vault in its old format, whole: run it again. A vault already in the current\n"
    "format is left as it is. Needs the passphrase of an encrypted vault (the keys are\n"
    "rewrapped). Afterwards, `vmbak verify VAULT` reads every chunk.\n"
    "\n"
    "options:\n"
    "  -h, --help              show this help\n";

/* The vault is opened here, not by verb_main(): the upgrade needs the passphrase again (the keys
 * are rewrapped) and opens the environment of an old format itself. */
static int cmd_upgrade(verb_ctx *c)
{
	vbs_upgrade_stats st = {0};
	vbs_vault *v = NULL;
	char *pass = NULL;
	const char *path = c->args[0];
	int status, r;

	r = vbs_vault_open(path, 0, &v);
	if (r < 0)
		return store_err(r, "cannot open vault '%s'", q(path));
	status = vault_unlock(v, path, c->passphrase_file, &pass);
	if (status != 0)
		goto out;
	r = vbs_vault_upgrade(v, pass, &st);
	if (r < 0) {
		status = store_err(r, "cannot upgrade vault '%s'", q(path));
		goto out;
	}
	if (st.finished)
		printf("vault %s: finished an upgrade to format %d that was cut short (or whose "
		       "config was put back): kept its format %d records, dropped the old tables\n",
		       path, VBS_FORMAT_VERSION, VBS_FORMAT_VERSION);
	else if (st.from_format == VBS_FORMAT_VERSION)
		printf("vault %s is already format %d%s\n", path, VBS_FORMAT_VERSION,
		       st.dropped_old ? "; removed tables a cut-short upgrade left" : "");
	else
		printf("vault %s upgraded from format %d to %d: %llu VMs, %llu points, %llu jobs\n",
		       path, st.from_format, VBS_FORMAT_VERSION, (unsigned long long)st.vms,
		       (unsigned long long)st.points, (unsigned long long)st.jobs);
	status = finish_stdout(VMBAK_EXIT_OK);
out:
	vbk_passphrase_free(pass);
	vbs_vault_close(v);
	return status;
}

static const char *const upgrade_args[] = {"VAULT"};

const vmbak_cmd cmd_upgrade_def = {
    .name = "upgrade",
    .summary = "rewrite a vault of an older format in the current one",
    .help = upgrade_help,
    .usage = UPGRADE_USAGE,
    .arg_names = upgrade_args,
    .min_args = 1,
    .max_args = 1,
    .flags = VERB_VAULT_ARG,
    .run = cmd_upgrade,
};
