/* file.h: reading and writing whole files, safely.
 *
 * Part of base/: includes nothing of ours. Every function is thread-safe.
 */
#ifndef VMBAK_FILE_H
#define VMBAK_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Reads a whole regular file (at most max bytes) into a malloc'ed buffer with one extra NUL
 * byte after the data. Returns 0 or -errno (-EFBIG when larger than max). The caller owns
 * *ret_buf. */
int vbu_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len);

/* Writes a file atomically: PATH.tmp.PID with the given mode and O_EXCL, write, fsync, rename,
 * fsync of the directory. Returns 0 or -errno; on failure nothing is left at path that was not
 * there before. -EEXIST when path exists and is not a regular file (a device such as /dev/null
 * or /dev/tty, a FIFO, a directory, a symlink): the rename would replace it. */
/* 0 when path does not exist or is a regular file (not following a symlink), -EEXIST when it
 * is anything else, else -errno of lstat. What vbu_write_file_atomic checks first. */
int vbu_target_regular(const char *path);
int vbu_write_file_atomic(const char *path, const void *buf, size_t len, unsigned mode);

/* The same, but never replaces a file: the complete file is linked to path, which fails with
 * -EEXIST when path exists. Of several writers of one path exactly one succeeds. */
int vbu_write_file_new(const char *path, const void *buf, size_t len, unsigned mode);

/* write() all of buf, retrying on EINTR and short writes. Returns 0 or -errno. */
int vbu_write_all(int fd, const void *buf, size_t len);
/* pread() exactly len bytes unless EOF comes first; *ret_got is the number read.
 * Returns 0 or -errno. */
int vbu_pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *ret_got);

/* 1 when the directory at path holds nothing but "." and "..", 0 when it holds something,
 * else -errno (-ENOENT, -ENOTDIR, -EACCES...). */
int vbu_dir_is_empty(const char *path);

#endif
