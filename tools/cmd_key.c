/* cmd_key.c: vmbak key list|add|passwd|remove, the passphrases (key slots) of a vault.
 *
 * Every subcommand needs a current passphrase (the usual sources); add and passwd read the new
 * one from --new-passphrase-file F, or ask twice on a terminal. Only the config changes
 * (vbs_vault_key_change): chunks and the database are never written.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "common.h"
#include "kv.h"
#include "passphrase.h"
#include "util.h"
#include "vault.h"

#define KEY_USAGE "vmbak key list|add|passwd|remove VAULT ..."

static const char key_help[] =
    "usage: vmbak key list VAULT [--json]\n"
    "       vmbak key add VAULT --new-passphrase-file F [--name NAME] [--keyvault KV]\n"
    "       vmbak key passwd VAULT --new-passphrase-file F [--name NAME] [--keyvault KV]\n"
    "       vmbak key remove VAULT NAME [--keyvault KV]\n"
    "\n"
    "The passphrases of an encrypted vault. Each is a key slot: a name, a creation time and\n"
    "the vault's keys wrapped under that passphrase, kept in the vault's config. Any one of\n"
    "them opens the vault. Every subcommand needs a current passphrase (--passphrase-file,\n"
    "VMBAK_PASSPHRASE_FILE, VMBAK_PASSPHRASE or the terminal). Changes rewrap the vault's\n"
    "keys only: chunks and the database are not touched, and a crash leaves the old set of\n"
    "slots or the new one. Opening tries the slots in order (one scrypt, about 0.1 s, per\n"
    "slot tried); a vault has at most 32.\n"
    "\n"
    "  list     the slots; the one the current passphrase opens is marked\n"
    "  add      a new slot for the passphrase in F (named key-N unless --name)\n"
    "  passwd   the slot NAME, or the one the current passphrase opens, now opens with the\n"
    "           passphrase in F (the old one stops working)\n"
    "  remove   the slot NAME goes (never the last one)\n"
    "\n"
    "options:\n"
    "  --new-passphrase-file F  the new passphrase: the first line of F (on a terminal,\n"
    "                          without this option, it is asked twice)\n"
    "  --name NAME             the slot: " VBS_NAME_RULE "\n"
    "  --passphrase-file F     read the current passphrase from the first line of F\n"
    "  --json                  (list) print a JSON array of {name, created, current}\n"
    "  --keyvault KV           (add, passwd, remove) log the change in key vault KV's audit\n"
    "                          log (without its passphrase: an unauthenticated line, vouched\n"
    "                          for by the next line a command with the passphrase writes)\n"
    "  -h, --help              show this help\n";

enum { OPT_JSON = 0x100, OPT_NEWPASS, OPT_NAME, OPT_KEYVAULT };
/* Which of the subcommand options a subcommand takes. */
enum { K_JSON = 1, K_NEWPASS = 2, K_NAME = 4, K_KEYVAULT = 8 };

typedef struct keyargs {
	const char *newpass_file, *name, *keyvault;
	int json;
} keyargs;

/* The new passphrase: from --new-passphrase-file, else asked twice on a terminal. Never from
 * the environment, where the current one is. */
static int new_passphrase(const keyargs *a, const char *path, const char *usage, char **ret)
{
	vbk_passphrase_source src = {
	    .file = a->newpass_file,
	    .prompt = "new vault passphrase: ",
	    .confirm = 1,
	};

	if (!a->newpass_file && !isatty(STDIN_FILENO))
		return usage_err("missing --new-passphrase-file F (usage: %s)", usage);
	return passphrase_get(&src, "the new passphrase of vault", path, ret);
}

static int key_list(verb_ctx *c)
{
	const char *path = c->args[0];
	const keyargs *a = c->opts;
	vbs_vault *v = c->v;
	json_object *arr = NULL;
	vbs_key_slot_info si;
	size_t n, w = 4;
	int status;

	n = vbs_vault_key_count(v);
	if (n == 0) {
		vbu_err("vault '%s' is not encrypted: it has no passphrase", q(path));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (a->json) {
		arr = json_object_new_array();
		for (size_t i = 0; arr && i < n; i++) {
			json_object *o = json_object_new_object();

			vbs_vault_key_get(v, i, &si);
			json_object_object_add(o, "name", json_object_new_string(si.name));
			json_object_object_add(o, "created", json_str_or_null(si.created));
			json_object_object_add(o, "current", json_object_new_boolean(si.current));
			json_object_array_add(arr, o);
		}
		if (!arr) {
			vbu_errno(-ENOMEM, "cannot list key slots");
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		status = json_print(arr);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (vbs_vault_key_get(v, i, &si) == 0 && strlen(si.name) > w)
			w = strlen(si.name);
	printf("%-*s  %-20s  %s\n", (int)w, "NAME", "CREATED", "CURRENT");
	for (size_t i = 0; i < n; i++) {
		vbs_vault_key_get(v, i, &si);
		printf("%-*s  %-20s  %s\n", (int)w, si.name, si.created[0] ? si.created : "-",
		       si.current ? "yes" : "-");
	}
	status = VMBAK_EXIT_OK;
out:
	return status;
}

static int key_change(vbs_key_op op, verb_ctx *c)
{
	const char *path = c->args[0], *usage = c->cmd->usage;
	const keyargs *a = c->opts;
	char *pass = NULL, *newpass = NULL, done[VBS_NAME_MAX + 1];
	vbs_vault *v = NULL;
	int status, r;

	/* Before any passphrase is asked: is it an encrypted vault at all? */
	r = vbs_vault_open(path, 1, &v);
	if (r < 0)
		return store_err(r, "cannot open vault '%s'", q(path));
	if (!vbs_vault_encrypted(v)) {
		vbs_vault_close(v);
		vbu_err("vault '%s' is not encrypted: it has no passphrase", q(path));
		return VMBAK_EXIT_FAIL;
	}
	vbs_vault_close(v);
	if (a->keyvault) {
		/* The audit log's key vault must be one before anything changes. */
		vbk_kv *kv = NULL;

		r = vbk_kv_open(a->keyvault, &kv);
		vbk_kv_close(kv);
		if (r < 0) {
			vbu_err("%s", q(vbk_kv_errmsg()));
			return VMBAK_EXIT_FAIL;
		}
	}
	if (op != VBS_KEY_REMOVE && (status = new_passphrase(a, path, usage, &newpass)) != 0)
		goto out;
	if ((status = passphrase_for(path, c->passphrase_file, 0, &pass)) != 0)
		goto out;
	r = vbs_vault_key_change(path, op, pass, a->name, newpass, done);
	if (a->keyvault) {
		static const char *const ops[] = {[VBS_KEY_ADD] = "vault-key-add",
						  [VBS_KEY_PASSWD] = "vault-key-passwd",
						  [VBS_KEY_REMOVE] = "vault-key-remove"};
		char detail[600], err[600];
		vbk_audit_event ev = {.op = ops[op], .detail = detail, .result = r < 0 ? r : 0};

		snprintf(detail, sizeof(detail), "vault '%s' key slot '%s'", path,
			 r < 0 ? (a->name ? a->name : "(current)") : done);
		snprintf(err, sizeof(err), "%s", *vbs_errmsg() ? vbs_errmsg() : vbu_strerror(-r));
		ev.error = r < 0 ? err : NULL;
		if (vbk_audit_append_path(a->keyvault, &ev) < 0 && r == 0) {
			vbu_err("the key slot changed, but the change is not in the audit log: %s",
				q(vbk_kv_errmsg()));
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
	}
	if (r < 0) {
		status = store_err(r, "cannot change the keys of vault '%s'", q(path));
		goto out;
	}
	switch (op) {
	case VBS_KEY_ADD:
		printf("added key slot '%s' to vault %s\n", done, path);
		break;
	case VBS_KEY_PASSWD:
		printf("changed the passphrase of key slot '%s' of vault %s\n", done, path);
		break;
	case VBS_KEY_REMOVE:
		printf("removed key slot '%s' from vault %s\n", done, path);
		break;
	}
	status = VMBAK_EXIT_OK;
out:
	vbk_passphrase_free(newpass);
	vbk_passphrase_free(pass);
	return status;
}

static const struct option key_options[] = {
    {"new-passphrase-file", required_argument, NULL, OPT_NEWPASS},
    {"name", required_argument, NULL, OPT_NAME},
    {"json", no_argument, NULL, OPT_JSON},
    {"keyvault", required_argument, NULL, OPT_KEYVAULT},
    {NULL, 0, NULL, 0},
};

/* The options of every subcommand; each takes those its entry's tag names (K_*). */
static int key_option(verb_ctx *c, int opt, const char *arg)
{
	keyargs *a = c->opts;
	unsigned f = opt == OPT_JSON	   ? K_JSON
		     : opt == OPT_NEWPASS  ? K_NEWPASS
		     : opt == OPT_NAME	   ? K_NAME
		     : opt == OPT_KEYVAULT ? K_KEYVAULT
					   : 0;
	int status;

	if (!f)
		return VMBAK_EXIT_USAGE;
	if (!(c->cmd->tag & f))
		return usage_err("option '--%s' is not for 'key %s' (usage: %s)",
				 f == K_JSON	  ? "json"
				 : f == K_NEWPASS ? "new-passphrase-file"
				 : f == K_NAME	  ? "name"
						  : "keyvault",
				 c->cmd->name, c->cmd->usage);
	if (opt == OPT_JSON) {
		a->json = 1;
	} else if (opt == OPT_KEYVAULT) {
		if (!*arg)
			return usage_err("empty argument for '--keyvault'");
		a->keyvault = arg;
	} else if (opt == OPT_NEWPASS) {
		if (!*arg)
			return usage_err("empty file name for --new-passphrase-file");
		a->newpass_file = arg;
	} else {
		if ((status = check_name_arg("key slot", arg)) != 0)
			return status;
		a->name = arg;
	}
	return 0;
}

/* remove: the slot NAME. */
static int key_name_check(verb_ctx *c)
{
	keyargs *a = c->opts;
	int status = check_name_arg("key slot", c->args[1]);

	if (status == 0)
		a->name = c->args[1];
	return status;
}

static int key_add(verb_ctx *c)
{
	return key_change(VBS_KEY_ADD, c);
}

static int key_passwd(verb_ctx *c)
{
	return key_change(VBS_KEY_PASSWD, c);
}

static int key_remove(verb_ctx *c)
{
	return key_change(VBS_KEY_REMOVE, c);
}

static const char *const key_arg_names[] = {"VAULT", "NAME"};

#define KEY_SUB(sub, use, n, fl, opts, chk, fn)                                                    \
	static const vmbak_cmd key_##sub##_def = {                                                 \
	    .name = #sub,                                                                          \
	    .help = key_help,                                                                      \
	    .usage = use,                                                                          \
	    .arg_names = key_arg_names,                                                            \
	    .min_args = n,                                                                         \
	    .max_args = n,                                                                         \
	    .flags = (fl) | VERB_VAULT_ARG | VERB_PASSPHRASE_FILE,                                 \
	    .options = key_options,                                                                \
	    .opts_size = sizeof(keyargs),                                                          \
	    .option = key_option,                                                                  \
	    .check = chk,                                                                          \
	    .run = fn,                                                                             \
	    .tag = opts,                                                                           \
	}

/* list opens the vault through the table; the others open it themselves (its config first, to
 * refuse a vault that is not encrypted before any passphrase is asked). */
KEY_SUB(list, "vmbak key list VAULT [--json]", 1, VERB_OPENS_VAULT, K_JSON, NULL, key_list);
KEY_SUB(add, "vmbak key add VAULT --new-passphrase-file F [--name NAME] [--keyvault KV]", 1, 0,
	K_NEWPASS | K_NAME | K_KEYVAULT, NULL, key_add);
KEY_SUB(passwd, "vmbak key passwd VAULT --new-passphrase-file F [--name NAME] [--keyvault KV]", 1,
	0, K_NEWPASS | K_NAME | K_KEYVAULT, NULL, key_passwd);
KEY_SUB(remove, "vmbak key remove VAULT NAME [--keyvault KV]", 2, 0, K_KEYVAULT, key_name_check,
	key_remove);

static const vmbak_cmd *const key_subs[] = {&key_list_def, &key_add_def, &key_passwd_def,
					    &key_remove_def};

const vmbak_cmd cmd_key_def = {
    .name = "key",
    .summary = "list, add, change or remove the passphrases of a vault",
    .help = key_help,
    .usage = KEY_USAGE,
    .subs = key_subs,
    .n_subs = VBU_ARRAY_SIZE(key_subs),
};
