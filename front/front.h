/* front.h: the front door both programs share: start-up, exit statuses, the version, messages
 * about user input and store/ failures, and opening a vault with its passphrase.
 *
 * vmbak (tools/) and vmbakfs (fs/) link this pair; neither includes or calls anything of the
 * other. It sits above store/ and keyvault/ and below the two programs.
 *
 * Conventions: functions that print the one line of an error themselves return an exit status
 * (0 when all is well), so a caller can write `if ((r = helper(...)) != 0) goto out;`. Only the
 * main thread prints. Every user-supplied string in a message goes through q().
 */
#ifndef VMBAK_FRONT_H
#define VMBAK_FRONT_H

#include "passphrase.h"
#include "vault.h"

#ifndef VMBAK_VERSION
#define VMBAK_VERSION "0.1.0"
#endif

/* Exit statuses: a contract, written down in vmbak(1) and vmbakfs(1). */
enum {
	VMBAK_EXIT_OK = 0,
	VMBAK_EXIT_FAIL = 1,   /* something failed; one line on stderr says what and where */
	VMBAK_EXIT_USAGE = 2,  /* the command line is wrong */
	VMBAK_EXIT_DAMAGE = 3, /* verify found damage (vmbak only) */
};

/* What differs between the two programs, given once to front_init(). */
typedef struct front_program {
	const char *name;	       /* prefix of every message: "vmbak" */
	const char *passphrase_option; /* named in "no passphrase" lines: "--passphrase-file" */
	int no_passphrase_status;      /* exit status when no passphrase source exists */
} front_program;

/* Start-up, first thing in main() while single-threaded: the message prefix, json-c's seed,
 * and no core dumps (both programs hold keys). p must outlive the process. Prints the error and
 * returns an exit status. */
int front_init(const front_program *p);

/* A user-supplied string made safe for a one-line message: control characters and bytes that
 * are not printable ASCII become \xNN, and more than about 400 characters are cut with "...".
 * Returns one of a few rotating thread-local buffers: valid for the next three calls. */
const char *q(const char *s);

/* Usage error: prints "PROG: MESSAGE" and returns VMBAK_EXIT_USAGE. */
int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A store/ failure: prints vbs_errmsg() (through q()) when it has one, else
 * "PROG: CONTEXT: strerror(-err)". Returns VMBAK_EXIT_FAIL. */
int store_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads a passphrase from src; on failure prints one line naming what ("vault", "key vault")
 * and path, and returns the exit status (the program's no_passphrase_status when there is no
 * source at all). On success *ret is freed with vbk_passphrase_free(). */
int passphrase_get(const vbk_passphrase_source *src, const char *what, const char *path,
		   char **ret);

/* The vault passphrase for path: from file (an option's value, or NULL), then
 * VMBAK_PASSPHRASE_FILE, VMBAK_PASSPHRASE, the terminal (asked twice with confirm). Prints the
 * error; exit status. On success *ret is freed with vbk_passphrase_free(). */
int passphrase_for(const char *path, const char *file, int confirm, char **ret);

/* Unlocks v (opened from path) when it needs a passphrase, taken as passphrase_for() does;
 * prints the error. ret_pass (may be NULL): the passphrase, for a caller that needs it again
 * (free it with vbk_passphrase_free); left untouched when none was needed or on failure. */
int vault_unlock(vbs_vault *v, const char *path, const char *file, char **ret_pass);

/* Opens the vault at path: config, then the passphrase as passphrase_for() takes it (every
 * verb: the records are sealed; VAULT_UNLOCK is kept for the callers that say so), then the
 * LMDB environment. Prints the error. readonly: open the environment read-only. With
 * VAULT_DAMAGE_EXIT a database LMDB finds damaged gives VMBAK_EXIT_DAMAGE (verify), not
 * VMBAK_EXIT_FAIL. On success *ret is closed with vbs_vault_close(). */
#define VAULT_UNLOCK 0x1
#define VAULT_DAMAGE_EXIT 0x2
int vault_open(const char *path, int readonly, int flags, const char *file, vbs_vault **ret);

/* name=value as one libfuse -o option: value's commas and backslashes escaped, so that
 * libfuse's option parser gives value back whole (vmbakfs's fsname, vmbak's passphrase_file
 * for the vmbakfs it starts). malloc'ed; NULL when out of memory. */
char *front_fuse_opt(const char *name, const char *value);

#endif
