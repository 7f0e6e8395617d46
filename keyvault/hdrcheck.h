/* hdrcheck.h: does a secret open a disk's LUKS or BitLocker header? Checked without ever
 * writing the disk.
 *
 * cryptsetup repairs a LUKS2 header whose primary copy is damaged from its secondary copy as it
 * loads it (--readonly only concerns the mapping), so it is never run on the disk being backed
 * up. vbk_hdr_check() copies the header area of source (read through an O_RDONLY descriptor)
 * into a private temporary file (mode 0600, in a directory of its own made with mkdtemp, mode
 * 0700), at the same offsets, sparse elsewhere and as long as the source, and runs cryptsetup on
 * that copy. The header area is, for LUKS1, the phdr and every key slot's material; for LUKS2,
 * both binary headers with their JSON areas (hdr_size from the header, at most 4 MiB) and every
 * key slot area the JSON names (each ending within VBK_HDR_AREA_MAX), read from whichever copy of
 * the header parses (the primary, else a secondary at one of the offsets LUKS2 allows). For
 * BitLocker (and BitLocker To Go), the first 4 KiB (the volume header, which gives the offsets of
 * the three FVE metadata blocks), the three 64 KiB FVE metadata areas (longer when the metadata
 * says so, at most 16 MiB each; wherever in the volume they are) and the encrypted boot sector
 * the metadata names (at most 16 MiB): cryptsetup 2.6 reads the first sector and the first FVE
 * block to test a secret. A source that is neither gets its first 4 KiB copied, and cryptsetup
 * (run as for LUKS) says it is not LUKS.
 *
 * Helpers are run by absolute path only (VBK_HELPER_DIRS, never PATH), with the environment
 * vbk_helper_env() gives (no VMBAK_* variable, so no passphrase, a fixed PATH, LC_ALL=C), stdin
 * a pipe carrying the secret, stdout and stderr /dev/null, and "--" before every path.
 */
#ifndef VMBAK_HDRCHECK_H
#define VMBAK_HDRCHECK_H

#include <stddef.h>
#include <stdint.h>

#define VBK_HELPER_DIRS "/usr/sbin", "/sbin", "/usr/bin", "/bin"
#define VBK_HELPER_PATH "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
#define VBK_HDR_AREA_MAX (256u << 20) /* a LUKS key slot area must end within the first 256 MiB */
/* A helper that runs longer than this (seconds) is killed (base/run.h): a test of one secret
 * takes seconds (Argon2 takes about 2 s and 1 GiB), a mount or a loop device less. */
#define VBK_HELPER_TIMEOUT 600

/* The absolute path of helper name (e.g. "cryptsetup") in VBK_HELPER_DIRS, into out (cap
 * bytes): 0, or -ENOENT when none of them has it as an executable regular file. */
int vbk_helper_find(const char *name, char *out, size_t cap);

/* The environment every helper gets: a NULL-terminated constant array. */
const char *const *vbk_helper_env(void);

typedef enum vbk_hdr_type {
	VBK_HDR_OTHER = 0, /* neither LUKS nor BitLocker at offset 0 (a partitioned disk, say) */
	VBK_HDR_LUKS,
	VBK_HDR_BITLK,
} vbk_hdr_type;

/* Which header source has (read through an O_RDONLY descriptor): 0, or -errno (-EINVAL not a
 * regular file or block device). */
int vbk_hdr_probe(const char *source, vbk_hdr_type *ret);

/* Checks secret (len bytes, given on cryptsetup's stdin as a key file) against the LUKS or
 * BitLocker header of source (cryptsetup luksOpen, or open --type bitlk, --test-passphrase).
 * Returns cryptsetup's exit status (0 opens, 2 refused, 1 not a LUKS device, or another of its
 * statuses), or -errno: -ENOENT no cryptsetup in VBK_HELPER_DIRS, -ETIME it ran longer than
 * VBK_HELPER_TIMEOUT, -EFBIG a header area larger than this build copies, else the failure to
 * read source or to copy. */
int vbk_hdr_check(const char *source, const uint8_t *secret, size_t len);
/* The same with the helper given by absolute path (tests). */
int vbk_hdr_check_with(const char *helper, const char *source, const uint8_t *secret, size_t len);

/* The same for a source read through fn (e.g. a disk image stored in a vault): fn reads len
 * bytes at off into buf, *ret_got fewer only at the end of the source; 0 or -errno. size is the
 * source's size; *ret_type (may be NULL) the header type found. */
typedef int (*vbk_hdr_reader)(void *arg, void *buf, size_t len, uint64_t off, size_t *ret_got);
int vbk_hdr_check_reader(vbk_hdr_reader fn, void *arg, uint64_t size, const uint8_t *secret,
			 size_t len, vbk_hdr_type *ret_type);
/* vbk_hdr_probe() for a source read through fn (size bytes): reads the first 4 KiB and, for
 * BitLocker, the FVE metadata block headers. 0, or the reader's -errno. */
int vbk_hdr_probe_reader(vbk_hdr_reader fn, void *arg, uint64_t size, vbk_hdr_type *ret);

#endif
