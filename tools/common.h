/* common.h: what the vmbak verbs share: the verb table entry, argument checks, sizes and times
 * for people, JSON output. Exit statuses, messages and opening a vault with its passphrase are
 * front/front.h's, shared with vmbakfs.
 *
 * Conventions of tools/: a verb's entry point returns the process exit status. Helpers that
 * print the one line of an error themselves also return an exit status (0 when all is well),
 * so a verb can write `if ((r = helper(...)) != 0) goto out;`. Only the main thread prints.
 */
#ifndef VMBAK_COMMON_H
#define VMBAK_COMMON_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "front.h"
#include "ingest.h"
#include "passphrase.h"
#include "seckind.h"
#include "util.h"
#include "vault.h"

/* Options given before the verb. */
typedef struct vmbak_globals {
	const char *passphrase_file; /* --passphrase-file, or NULL */
	int progress;		     /* --progress */
	/* For vmbak backup (cmd_backup.c), which hands a job file's lines to the verbs' own
	 * parsers: verb_main() parses and checks the arguments as always (same messages, same
	 * exit status), then returns 0 before step 5, before anything is opened or changed.
	 * (Which options a verb has: verb_option_table().) */
	int check_only;
} vmbak_globals;

/* ---- the verb table (vmbak.c), in the systemd style ----
 *
 * An entry says what every verb would otherwise write again: its options (the verb's own;
 * --help, and with VERB_PASSPHRASE_FILE --passphrase-file F and the refused --passphrase, are
 * added here), how many positional arguments it takes and their names, whether the first one
 * is a vault and whether the vault is opened for it. verb_main() then, in this order (the
 * order every verb had, so the first message a bad command line gets is the same):
 *
 *   1. parses the options: --help prints help and ends with 0; each of the verb's options goes
 *      to option(), which stores it in c->opts (opts_size bytes, zeroed) and may refuse it;
 *      then options_done() checks them against each other;
 *   2. counts the positional arguments (check_nargs: "missing VM (usage: ...)");
 *   3. VERB_VAULT_ARG (implied by VERB_OPENS_VAULT): checks args[0] (check_vault_arg);
 *   4. check(): the verb's other checks of its arguments, before anything is opened;
 *   5. VERB_OPENS_VAULT: vault_open() of args[0] (config, the passphrase from c->passphrase_file
 *      or the usual sources, the environment; read-only unless VERB_WRITES) into c->v;
 *   6. run(), the work (not with g->check_only); then the vault is closed and done() frees
 *      what the verb kept in c->opts (also when an earlier step failed).
 *
 * Every step that fails has printed its line and ends the verb with its exit status. A verb
 * that writes keeps a job record itself (jobs_cli.h: cli_job_start), as only it knows when its
 * work starts and what it counts.
 */
#define VERB_VAULT_ARG 0x1	 /* args[0] is a vault path */
#define VERB_OPENS_VAULT 0x2	 /* args[0] is opened before run() (implies VERB_VAULT_ARG) */
#define VERB_WRITES 0x4		 /* the vault is opened read-write */
#define VERB_PASSPHRASE_FILE 0x8 /* takes --passphrase-file F, and refuses --passphrase */

typedef struct vmbak_cmd vmbak_cmd;

/* What verb_main() hands a verb. */
typedef struct verb_ctx {
	const vmbak_cmd *cmd;
	vmbak_globals *g;
	/* The verb's argv, argv[0] its name (for sizes taken from it). */
	int argc;
	char **argv;
	/* The positional arguments, after step 2. */
	int nargs;
	char **args;
	/* The verb's --passphrase-file, else the global one, or NULL; and the verb's alone. */
	const char *passphrase_file;
	const char *passphrase_opt;
	/* The verb's options: opts_size bytes, zeroed before step 1. */
	void *opts;
	/* VERB_OPENS_VAULT: the open vault args[0], during run(). */
	vbs_vault *v;
} verb_ctx;

struct vmbak_cmd {
	const char *name;
	const char *summary;	      /* one line for `vmbak --help` */
	const char *help;	      /* full text for `vmbak VERB --help` and `vmbak help VERB` */
	const char *usage;	      /* the synopsis in "missing VAULT (usage: ...)" */
	const char *const *arg_names; /* names of the positional arguments, for those messages */
	int min_args, max_args;
	unsigned flags;		      /* VERB_* */
	const struct option *options; /* the verb's own, ended by {NULL}; may be NULL */
	const char *shortopts;	      /* NULL: ":h" */
	size_t opts_size;
	/* One of the verb's options (getopt_long's value, its argument or NULL): 0, or the exit
	 * status that ends the verb (after printing why). */
	int (*option)(verb_ctx *c, int opt, const char *arg);
	int (*options_done)(verb_ctx *c); /* end of step 1, may be NULL: 0 or an exit status */
	int (*check)(verb_ctx *c);	  /* step 4, may be NULL: 0 or an exit status */
	int (*run)(verb_ctx *c);	  /* step 6: the exit status */
	void (*done)(verb_ctx *c);	  /* may be NULL */
	/* A verb of subcommands (key): the entry of each, which verb_main() runs on what follows
	 * the subcommand (argv[0] still the verb's name, so messages point to its --help). Of
	 * this entry only name, summary, help and usage are used. */
	const vmbak_cmd *const *subs;
	size_t n_subs;
	unsigned long tag; /* the verb's own use (key: the options a subcommand takes) */
	/* A verb that finds its subcommand itself (keyvault: two words deep, with messages that
	 * name the key vault), then runs verb_main() on an entry of its own making: gets argv with
	 * argv[0] the verb's name; nothing above is used but name, summary and help. */
	int (*main)(int argc, char **argv, vmbak_globals *g);
};

/* Runs cmd on argv (argv[0] the verb's name) as described above: the exit status. */
int verb_main(const vmbak_cmd *cmd, int argc, char **argv, vmbak_globals *g);

/* The getopt_long table verb_main() parses cmd's options with: the verb's own, --help, and with
 * VERB_PASSPHRASE_FILE --passphrase-file and --passphrase. malloc'ed (free it); NULL when out
 * of memory or for an entry of subcommands or with its own main. */
struct option *verb_option_table(const vmbak_cmd *cmd);

extern const vmbak_cmd cmd_init_def, cmd_ingest_def, cmd_list_def, cmd_info_def;
extern const vmbak_cmd cmd_verify_def, cmd_upgrade_def, cmd_restore_def;
extern const vmbak_cmd cmd_keyvault_def, cmd_key_def, cmd_rewrap_def;
extern const vmbak_cmd cmd_files_def;
extern const vmbak_cmd cmd_sync_def, cmd_serve_def;

/* getopt_long for a verb: returns the option, or -1 at the end. Unknown options and missing
 * arguments print one line and make it return '?' (the caller returns VMBAK_EXIT_USAGE).
 * Call with *state = 0 before the first option; it resets getopt. */
/* Prints the one line for getopt_long's '?' or ':' (c), after the failing call. verb: the verb
 * whose options these are, or NULL for the global options. */
void getopt_error(char **argv, const struct option *longopts, int c, const char *verb);
int verb_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
		int *state);

/* There is deliberately no --passphrase option. Verbs that take --passphrase-file list
 * {"passphrase", required_argument, NULL, OPT_PASSPHRASE_REFUSED} too, so that "--passphrase X"
 * is refused with a clear message instead of being taken as an abbreviation of
 * --passphrase-file or having X end up as an argument (and so in a message). */
#define OPT_PASSPHRASE_REFUSED 0x1ff
int passphrase_option_refused(void);

/* Checks shared by verbs; each prints the line and returns VMBAK_EXIT_USAGE on failure. */
int check_vault_arg(const char *path);
int check_name_arg(const char *what, const char *name);
/* A point argument "VM", "VM/", "VM/latest" or "VM/RP" into vm (VBS_NAME_MAX + 1 bytes) and
 * id (VBS_RP_ID_MAX bytes; "" for none or latest). need_id: only "VM/RP" or "VM/latest" will
 * do, and usage is the verb's synopsis for the message. */
int check_point_arg(const char *target, int need_id, const char *usage, char *vm, char *id);
/* Positional arguments: names[i] is the i-th one's name for "missing VM" messages; nmin of
 * them are required, at most nmax allowed; usage is the verb's one-line synopsis. */
int check_nargs(const char *usage, const char *const *names, int nmin, int nmax, int nargs,
		char **args);

/* A count given on the command line: decimal digits only (no sign, no space), lo to hi. 0 and
 * *ret, or -EINVAL (the caller says what the option wants). */
int parse_count(const char *s, unsigned long lo, unsigned long hi, unsigned long *ret);

/* The passphrase file a verb uses: its own --passphrase-file (opt, may be NULL), else the
 * global one, else NULL (then the environment or the terminal: front.h's passphrase_for()). */
const char *verb_passphrase_file(const char *opt, const vmbak_globals *g);

/* The argument of --passphrase-file: 0 and *ret = arg, or the usage status for an empty one. */
int passphrase_file_arg(const char *arg, const char **ret);

/* "512 B", "64.0 KiB", "3.0 GiB", "800 MiB": into buf, which it returns. */
#define HUMAN_SIZE_LEN 24
const char *human_size(uint64_t bytes, char buf[HUMAN_SIZE_LEN]);

/* JSON helpers (json-c). */
json_object *json_u64(uint64_t v);
json_object *json_str_or_null(const char *s); /* NULL or "" give JSON null */
json_object *json_time(int64_t unix_s);	      /* "YYYY-MM-DDTHH:MM:SSZ", or null for 0 */
/* Prints o as one pretty document and a newline on stdout, then drops the reference. Returns
 * an exit status (failing only when stdout fails). */
int json_print(json_object *o);

/* Flushes stdout and reports a write error (full disk, closed pipe) as a failure. */
int finish_stdout(int status);

/* Escrow at ingest (cmd_keyvault.c): escrow_setup() opens the key vault at kv_path, asks for its
 * passphrase only when a secret needs it (AES KEK or no KEK, or a check), and prepares
 * secrets[i] for disks[i] with the kind of secret kinds[i] (VBK_KIND_NONE: found from the disk's
 * header); every secret and KEK is looked up there, before any disk is read. Then, once the
 * ingest's disks are open (paths, NBD connections, a VM's frozen exports: the same bytes the
 * point is read from), escrow_headers() reads the header of each escrowed disk (found by name in
 * disks[0..n); a name none has is an error naming VM vm) through its path or its source object,
 * decides the kind (the header and, with the key vault unlocked, the value), and with check
 * (--check-escrow) checks with cryptsetup, on a private copy of the header area, that each
 * secret opens the disk's LUKS or BitLocker header. Both print the error and return an exit
 * status. escrow_blob_cb is a vbs_escrow_fn taking the escrow_ctx; it refuses a disk whose
 * header escrow_headers() has not read. After a failed ingest, escrow_report() prints the
 * failure of the callback, if it had one, and returns VMBAK_EXIT_FAIL (0 when it had none). */
typedef struct escrow_ctx escrow_ctx;
int escrow_setup(const char *kv_path, const char *passfile, const char *const *disks,
		 const char *const *secrets, const vbk_kind *kinds, size_t n, int check,
		 escrow_ctx **ret);
int escrow_headers(escrow_ctx *c, const vbs_ingest_disk *disks, size_t n, const char *vm);
int escrow_blob_cb(void *arg, const char *vm, const char *rp_id, const char *disk, char **ret_blob,
		   size_t *ret_len);
int escrow_report(const escrow_ctx *c);
/* Checks the key vault of c against what vault v remembers of it (store/kvpin.h): the same
 * signing key, a generation not lower; records a higher one. Prints the error; exit status. */
int escrow_pin(const escrow_ctx *c, vbs_vault *v, const char *vault_path);
void escrow_ctx_free(escrow_ctx *c);

#endif
