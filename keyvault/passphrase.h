/* passphrase.h: where a passphrase comes from, never the command line.
 *
 * Order of sources: an explicit file (a --passphrase-file option or -o passphrase_file=F), then
 * the environment variable naming a file (env_file, e.g. VMBAK_PASSPHRASE_FILE), then the
 * variable holding the passphrase itself (env_value, e.g. VMBAK_PASSPHRASE), then a prompt on
 * the controlling terminal with echo off (only when stdin is a terminal). A file's content is
 * taken up to its first newline ("\n" or "\r\n"), so `echo secret > f` works.
 *
 * Errors: -ENOKEY when no source is available (no file, no variable, no terminal), -EINVAL for
 * an empty passphrase, -EFBIG for one longer than VBK_PASSPHRASE_MAX, -errno when the file
 * cannot be read. Error messages are the caller's to print; they name the source (file path or
 * variable name), never the passphrase.
 */
#ifndef VMBAK_PASSPHRASE_H
#define VMBAK_PASSPHRASE_H

#include <stddef.h>

#define VBK_PASSPHRASE_MAX 1024

typedef struct vbk_passphrase_source {
	const char *file;      /* explicit file, or NULL */
	const char *env_file;  /* name of the variable that names a file */
	const char *env_value; /* name of the variable that holds the passphrase */
	const char *prompt;    /* terminal prompt, e.g. "vault passphrase: " */
	int confirm;	       /* on a terminal, ask twice and require the same answer */
} vbk_passphrase_source;

/* On success *ret is a NUL-terminated malloc'ed passphrase owned by the caller, to be released
 * with vbk_passphrase_free() (which wipes it), and *ret_from describes where it came from for
 * messages ("file '/x'", "VMBAK_PASSPHRASE", "terminal"); *ret_from is static or points into
 * src and may be NULL. On -ENOKEY/-errno, *ret_from still says which source failed. */
int vbk_passphrase_get(const vbk_passphrase_source *src, char **ret, const char **ret_from);
void vbk_passphrase_free(char *pass);

#endif
