/* util.h: the few helpers every layer uses (messages, hex, base64, time, files).
 *
 * This pair sits at the bottom of the dependency graph: it includes nothing of ours, and
 * keyvault/, store/, fs/ and tools/ may all include it. Keep it small.
 *
 * Thread safety: every function here is thread-safe except vbu_set_progname(), which is called
 * once from main() before any thread starts.
 */
#ifndef VMBAK_UTIL_H
#define VMBAK_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define VBU_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Program name used as the prefix of every message ("vmbak: ..."). */
void vbu_set_progname(const char *name);
const char *vbu_progname(void);

/* Print "PROG: MESSAGE\n" to stderr as one write (so lines from threads do not mix).
 * Messages follow git's rules: lowercase, no final period, the subject in quotes.
 * Never pass a secret in the arguments. */
void vbu_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vbu_verr(const char *fmt, va_list ap);

/* Like vbu_err() with ": strerror(-neg_errno)" appended. */
void vbu_errno(int neg_errno, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* strerror() that is thread-safe and never returns NULL. Returns a static string. */
const char *vbu_strerror(int errnum);

/* Lowercase hex: out must hold 2*len+1 bytes; always NUL-terminated. */
void vbu_hex_encode(const uint8_t *in, size_t len, char *out);
/* Parses exactly 2*len hex digits into out. Returns 0, or -EINVAL on any other input. */
int vbu_hex_decode(const char *in, uint8_t *out, size_t len);

/* Standard base64 with padding. vbu_base64_encode returns a malloc'ed NUL-terminated
 * string owned by the caller (NULL on allocation failure). vbu_base64_decode writes at most
 * cap bytes to out and the decoded length to *ret_len; -EINVAL on malformed input, -ENOSPC if
 * it does not fit. */
char *vbu_base64_encode(const uint8_t *in, size_t len);
int vbu_base64_decode(const char *in, uint8_t *out, size_t cap, size_t *ret_len);

/* Wall clock in nanoseconds since the epoch (CLOCK_REALTIME). */
int64_t vbu_now_ns(void);
/* Monotonic clock in nanoseconds, for rates and timeouts. */
int64_t vbu_mono_ns(void);
/* Formats seconds since the epoch as "YYYY-MM-DDTHH:MM:SSZ" (UTC). buf must hold 21 bytes. */
void vbu_format_time(int64_t unix_s, char buf[21]);
/* Parses "YYYY-MM-DD" as midnight UTC of that day. Returns 0 or -EINVAL (also for impossible
 * dates such as 2026-02-30). */
int vbu_parse_date(const char *s, int64_t *ret_unix_s);

/* Parses a byte count: decimal digits with an optional suffix K, M, G, T (powers of 1024,
 * optionally followed by "iB" or "B"). Returns 0, -EINVAL or -ERANGE. */
int vbu_parse_size(const char *s, uint64_t *ret);

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

/* Seeds json-c's string hash once, at program start (single-threaded): json-c would print a
 * line of its own on stderr if getrandom() failed at its first use. */
void vbu_json_seed(void);

#endif
