/* util.h: the few helpers every layer uses (messages, hex, base64, time, sizes, uuids, names).
 *
 * base/ sits at the bottom of the dependency graph: it includes nothing of ours outside base/,
 * and keyvault/, store/, fs/ and tools/ may all include it. Files are in file.h, JSON in json.h.
 * Keep it small.
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

/* The thread's message of the last failure in keyvault/ or store/: one line, no program
 * prefix, never a secret. vbu_fail() sets it and returns err, so `return vbu_fail(-EIO, ...)`;
 * its arguments may include vbu_errmsg() itself. vbu_errmsg() returns "" when none was set since
 * vbu_clear_err(); the string stays valid until the next vbu_fail() or vbu_clear_err() of this
 * thread. store/ and keyvault/ call these vbs_fail() and kv_fail(), and their callers read it as
 * vbs_errmsg() and vbk_kv_errmsg(). */
#define VBU_ERRMSG_MAX 1024
int vbu_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *vbu_errmsg(void);
void vbu_clear_err(void);

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

/* A UUID's 16 bytes in its text form, lowercase ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"). */
#define VBU_UUID_LEN 36
void vbu_uuid_format(const uint8_t b[16], char out[VBU_UUID_LEN + 1]);

/* Names of VMs, disks, key slots, keys and secrets: 1-64 characters of [A-Za-z0-9._-], not
 * starting with a dot (so never "." or "..", never a path). Returns 1 when valid, else 0
 * (also for NULL). VBU_NAME_RULE says so in words for messages. */
#define VBU_NAME_MAX 64
#define VBU_NAME_RULE "1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.'"
int vbu_name_valid(const char *name);

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

#endif
