/* seckind.h: what kind of secret opens a disk, and whether a value has the form of that kind.
 *
 * An escrow blob says which kind of secret it holds, so that whoever restores a disk years later
 * knows what to do with the bytes unwrap gives back:
 *
 *   luks                   a LUKS passphrase or key file (any bytes, as cryptsetup --key-file
 *                          reads them)
 *   bitlocker-password     a BitLocker user password (UTF-8 text, no control characters)
 *   bitlocker-recovery     a BitLocker 48-digit recovery password, exactly 55 bytes: 8 groups of
 *                          6 digits separated by '-', each group divisible by 11 with a quotient
 *                          below 65536 (that is BitLocker's own check on every group)
 *   bitlocker-startup-key  a BitLocker startup key: the whole content of a .BEK file (a binary
 *                          FVE metadata block: 48-byte header, then an external key entry)
 *
 * Nothing here reads a disk or a key vault; the functions only look at bytes given to them, and
 * no message they leave (in *ret_why) contains a byte of the secret. Thread-safe.
 */
#ifndef VMBAK_SECKIND_H
#define VMBAK_SECKIND_H

#include <stddef.h>
#include <stdint.h>

typedef enum vbk_kind {
	VBK_KIND_NONE = 0, /* not known (blobs made before kinds, or not told and not found) */
	VBK_KIND_LUKS,
	VBK_KIND_BITLK_PASSWORD,
	VBK_KIND_BITLK_RECOVERY,
	VBK_KIND_BITLK_STARTUP_KEY,
} vbk_kind;

#define VBK_KIND_NAMES "luks, bitlocker-password, bitlocker-recovery, bitlocker-startup-key"
#define VBK_BEK_MAX 4096 /* the largest .BEK file accepted (real ones are 156-180 bytes) */

/* "luks", "bitlocker-password", ...; "" for VBK_KIND_NONE. Never NULL. */
const char *vbk_kind_name(vbk_kind k);
/* The kind named s (one of VBK_KIND_NAMES): 0, or -EINVAL. */
int vbk_kind_parse(const char *s, vbk_kind *ret);
/* 1 for the three BitLocker kinds. */
int vbk_kind_is_bitlocker(vbk_kind k);

/* 0 when the len bytes at v have the form of kind k, else -EINVAL and *ret_why (may be NULL) a
 * static phrase saying what is wrong ("group 3 is not divisible by 11"). VBK_KIND_NONE and luks
 * accept any non-empty value. */
int vbk_kind_check(vbk_kind k, const uint8_t *v, size_t len, const char **ret_why);

/* The BitLocker kind a value has the form of: a recovery password (also when followed by one
 * newline, which vbk_kind_check then refuses with a clear reason), a startup key, else a user
 * password. */
vbk_kind vbk_kind_classify_bitlocker(const uint8_t *v, size_t len);

#endif
