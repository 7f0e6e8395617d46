/* util.c: messages, hex, base64, time and file helpers (see util.h). */
#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util.h"

/* Longest message line; longer ones are cut and end in "...". */
#define MSG_MAX 4096

/* Largest piece handed to one read(), write() or pread() call, and to the int-sized OpenSSL
 * base64 calls (a multiple of 3 and of 4 that fits in an int after encoding). */
#define IO_PIECE ((size_t)1 << 30)
#define B64_IN_PIECE ((size_t)3 << 28)
#define B64_OUT_PIECE ((size_t)4 << 28)

static const char *progname = "vmbak";

void vbu_set_progname(const char *name)
{
	const char *slash;

	if (!name || !*name)
		return;
	slash = strrchr(name, '/');
	progname = slash && slash[1] ? slash + 1 : name;
}

const char *vbu_progname(void)
{
	return progname;
}

void vbu_verr(const char *fmt, va_list ap)
{
	char buf[MSG_MAX];
	int saved = errno;
	size_t len;
	int n;

	n = snprintf(buf, sizeof(buf), "%s: ", progname);
	if (n < 0 || (size_t)n >= sizeof(buf) - 1)
		n = 0;
	len = (size_t)n;
	n = vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
	if (n < 0) {
		/* Only an invalid format gets here; still say something. */
		n = snprintf(buf + len, sizeof(buf) - len, "(unprintable message)");
		if (n < 0)
			n = 0;
	}
	if ((size_t)n >= sizeof(buf) - len - 1) {
		/* Cut: leave room for "...\n" and the NUL. */
		len = sizeof(buf) - 5;
		memcpy(buf + len, "...", 3);
		len += 3;
	} else {
		len += (size_t)n;
	}
	buf[len++] = '\n';
	/* One write so lines from threads do not interleave; a failure here has nowhere to go. */
	(void)vbu_write_all(STDERR_FILENO, buf, len);
	errno = saved;
}

void vbu_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vbu_verr(fmt, ap);
	va_end(ap);
}

void vbu_errno(int neg_errno, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		snprintf(msg, sizeof(msg), "(unprintable message)");
	vbu_err("%s: %s", msg, vbu_strerror(neg_errno < 0 ? -neg_errno : neg_errno));
}

const char *vbu_strerror(int errnum)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	/* strerrordesc_np returns a constant string, unlike strerror (locale, static buffer). */
	const char *s = strerrordesc_np(errnum);
	return s ? s : "Unknown error";
#else
	/* Other C libraries: a per-thread buffer, so the string lives until the next call from
	 * the same thread. */
	static __thread char buf[128];
#if defined(__GLIBC__)
	return strerror_r(errnum, buf, sizeof(buf));
#else
	if (strerror_r(errnum, buf, sizeof(buf)) != 0)
		return "Unknown error";
	return buf;
#endif
#endif
}

void vbu_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vbu_hex_decode(const char *in, uint8_t *out, size_t len)
{
	size_t i;

	if (!in)
		return -EINVAL;
	/* Check everything first so out is untouched on error. */
	for (i = 0; i < 2 * len; i++)
		if (hex_value(in[i]) < 0)
			return -EINVAL;
	if (in[2 * len] != '\0')
		return -EINVAL;
	for (i = 0; i < len; i++)
		out[i] = (uint8_t)(hex_value(in[2 * i]) << 4 | hex_value(in[2 * i + 1]));
	return 0;
}

char *vbu_base64_encode(const uint8_t *in, size_t len)
{
	size_t groups = len / 3 + (len % 3 != 0), outlen, i, o = 0;
	char *out;

	if (__builtin_mul_overflow(groups, (size_t)4, &outlen) ||
	    __builtin_add_overflow(outlen, (size_t)1, &outlen))
		return NULL;
	out = malloc(outlen);
	if (!out)
		return NULL;
	for (i = 0; i < len; i += B64_IN_PIECE) {
		size_t n = len - i < B64_IN_PIECE ? len - i : B64_IN_PIECE;
		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, in + i, (int)n);
	}
	out[o] = '\0';
	return out;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int vbu_base64_decode(const char *in, uint8_t *out, size_t cap, size_t *ret_len)
{
	uint8_t last[3];
	size_t n, pad = 0, full, outlen, i;
	int r = 0;

	if (!in)
		return -EINVAL;
	n = strlen(in);
	if (n % 4 != 0)
		return -EINVAL;
	if (n == 0) {
		*ret_len = 0;
		return 0;
	}
	/* EVP_DecodeBlock skips blanks, accepts '=' anywhere in the last group and ignores
	 * nonzero bits under the padding, so the input is checked strictly here first: only the
	 * alphabet, at most two '=' and only at the end, and the canonical encoding. */
	if (in[n - 1] == '=')
		pad = in[n - 2] == '=' ? 2 : 1;
	for (i = 0; i < n - pad; i++)
		if (b64_value((unsigned char)in[i]) < 0)
			return -EINVAL;
	if (pad == 2 && (b64_value((unsigned char)in[n - 3]) & 0x0f) != 0)
		return -EINVAL;
	if (pad == 1 && (b64_value((unsigned char)in[n - 2]) & 0x03) != 0)
		return -EINVAL;
	outlen = n / 4 * 3 - pad;
	if (outlen > cap)
		return -ENOSPC;

	/* Whole groups go straight to out; the last one through a small buffer, because
	 * EVP_DecodeBlock writes three bytes for it whatever its padding. */
	full = n - 4;
	for (i = 0; i < full; i += B64_OUT_PIECE) {
		size_t k = full - i < B64_OUT_PIECE ? full - i : B64_OUT_PIECE;
		if (EVP_DecodeBlock(out + i / 4 * 3, (const unsigned char *)in + i, (int)k) < 0) {
			r = -EINVAL;
			goto out;
		}
	}
	if (EVP_DecodeBlock(last, (const unsigned char *)in + full, 4) != 3) {
		r = -EINVAL;
		goto out;
	}
	memcpy(out + full / 4 * 3, last, 3 - pad);
	*ret_len = outlen;
out:
	OPENSSL_cleanse(last, sizeof(last));
	return r;
}

int64_t vbu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t vbu_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 9999-12-31T23:59:59Z, the last second that fits the fixed-width format. */
#define TIME_MAX_S INT64_C(253402300799)

void vbu_format_time(int64_t unix_s, char buf[21])
{
	struct tm tm;
	time_t t;
	int n;

	/* Times come from disk too: clamp to what the 20-character form can show, so the
	 * output always has that shape. */
	if (unix_s < 0)
		unix_s = 0;
	if (unix_s > TIME_MAX_S)
		unix_s = TIME_MAX_S;
	t = (time_t)unix_s;
	if (!gmtime_r(&t, &tm)) {
		memcpy(buf, "1970-01-01T00:00:00Z", 21);
		return;
	}
	n = snprintf(buf, 21, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n != 20)
		memcpy(buf, "1970-01-01T00:00:00Z", 21);
}

static int digits(const char *s, size_t n, int *ret)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*ret = v;
	return 0;
}

int vbu_parse_date(const char *s, int64_t *ret_unix_s)
{
	struct tm tm = {0}, back;
	int year, mon, day;
	time_t t;

	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -EINVAL;
	if (digits(s, 4, &year) < 0 || digits(s + 5, 2, &mon) < 0 || digits(s + 8, 2, &day) < 0)
		return -EINVAL;
	if (mon < 1 || mon > 12 || day < 1 || day > 31)
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	/* timegm normalises 2026-02-30 to March 2nd: convert back and insist on the same day. */
	t = timegm(&tm);
	if (!gmtime_r(&t, &back) || back.tm_year != year - 1900 || back.tm_mon != mon - 1 ||
	    back.tm_mday != day || back.tm_hour != 0 || back.tm_min != 0 || back.tm_sec != 0)
		return -EINVAL;
	*ret_unix_s = (int64_t)t;
	return 0;
}

int vbu_parse_size(const char *s, uint64_t *ret)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++)
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -ERANGE;
	switch (*p) {
	case 'K':
	case 'k':
		mult = UINT64_C(1) << 10;
		break;
	case 'M':
	case 'm':
		mult = UINT64_C(1) << 20;
		break;
	case 'G':
	case 'g':
		mult = UINT64_C(1) << 30;
		break;
	case 'T':
	case 't':
		mult = UINT64_C(1) << 40;
		break;
	default:
		break;
	}
	if (mult != 1) {
		p++;
		if (strcmp(p, "iB") == 0 || strcmp(p, "B") == 0)
			p += strlen(p);
	} else if (strcmp(p, "B") == 0) {
		/* "512B": plain bytes. */
		p++;
	}
	if (*p)
		return -EINVAL;
	if (__builtin_mul_overflow(v, mult, &v))
		return -ERANGE;
	*ret = v;
	return 0;
}

/* Grows a buffer that may hold a secret (passphrase and key files come through here): the old
 * copy is wiped, never left behind by realloc. */
static int grow(char **buf, size_t used, size_t *cap, size_t want)
{
	char *n = malloc(want);

	if (!n)
		return -ENOMEM;
	if (*buf) {
		memcpy(n, *buf, used);
		OPENSSL_cleanse(*buf, *cap);
		free(*buf);
	}
	*buf = n;
	*cap = want;
	return 0;
}

int vbu_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len)
{
	char *buf = NULL;
	size_t cap = 0, len = 0, limit, want0;
	struct stat st;
	int fd, r;

	/* Read up to max + 1 bytes to notice a file larger than max; the buffer also needs room
	 * for the terminating NUL. */
	if (max > SIZE_MAX - 2)
		max = SIZE_MAX - 2;
	limit = max + 1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		goto out;
	}
	/* Regular files are read in one go; pipes and the like (a passphrase given as
	 * <(command)) are read to end of file. */
	want0 = 4096;
	if (S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size < limit)
		want0 = (size_t)st.st_size + 2;
	if (want0 > limit + 1)
		want0 = limit + 1;
	r = grow(&buf, 0, &cap, want0);
	if (r < 0)
		goto out;
	for (;;) {
		ssize_t n;
		size_t want;

		if (len == cap - 1) {
			size_t ncap;
			if (len >= limit) {
				r = -EFBIG;
				goto out;
			}
			ncap = cap > (limit + 1) / 2 ? limit + 1 : cap * 2;
			r = grow(&buf, len, &cap, ncap);
			if (r < 0)
				goto out;
		}
		want = cap - 1 - len;
		if (want > IO_PIECE)
			want = IO_PIECE;
		n = read(fd, buf + len, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		r = -EFBIG;
		goto out;
	}
	buf[len] = '\0';
	*ret_buf = buf;
	*ret_len = len;
	buf = NULL;
	r = 0;
out:
	if (buf) {
		OPENSSL_cleanse(buf, cap);
		free(buf);
	}
	close(fd);
	return r;
}

/* Opens the directory holding path, for fsync after a rename. */
static int open_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd;

	if (!slash)
		return open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (slash == path)
		return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dir = strndup(path, (size_t)(slash - path));
	if (!dir) {
		errno = ENOMEM;
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	return fd;
}

int vbu_target_regular(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	return S_ISREG(st.st_mode) ? 0 : -EEXIST;
}

static int write_file(const char *path, const void *buf, size_t len, unsigned mode, int excl)
{
	char *tmp = NULL;
	size_t tlen;
	int fd = -1, dfd = -1, created = 0, n, r;

	if (!path || !*path)
		return -EINVAL;
	tlen = strlen(path) + 32;
	tmp = malloc(tlen);
	if (!tmp)
		return -ENOMEM;
	n = snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= tlen) {
		r = -ENAMETOOLONG;
		goto out;
	}
	/* The rename would replace whatever is at path: never a device node (/dev/null,
	 * /dev/tty), a FIFO, a socket, a directory or a symlink with a regular file. */
	r = vbu_target_regular(path);
	if (r < 0)
		goto out;
	/* O_EXCL: never follow or reuse what someone else put there. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	created = 1;
	r = vbu_write_all(fd, buf, len);
	if (r < 0)
		goto out;
	if (fsync(fd) < 0) {
		r = -errno;
		goto out;
	}
	r = close(fd);
	fd = -1;
	if (r < 0) {
		r = -errno;
		goto out;
	}
	if (excl) {
		/* link() never replaces: of several writers, exactly one gets path. A file
		 * system without hard links may still rename without replacing. */
		if (link(tmp, path) == 0) {
			unlink(tmp);
		} else if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP) {
			r = -errno;
			goto out;
		} else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
			r = -errno;
			goto out;
		}
	} else if (rename(tmp, path) < 0) {
		r = -errno;
		goto out;
	}
	created = 0;
	/* The rename is durable only once the directory is. If this fails the new content is
	 * already at path; the error still tells the caller it may not survive a crash. */
	dfd = open_parent(path);
	if (dfd < 0) {
		r = -errno;
		goto out;
	}
	if (fsync(dfd) < 0) {
		r = -errno;
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (created)
		unlink(tmp);
	free(tmp);
	return r;
}

int vbu_write_file_atomic(const char *path, const void *buf, size_t len, unsigned mode)
{
	return write_file(path, buf, len, mode, 0);
}

int vbu_write_file_new(const char *path, const void *buf, size_t len, unsigned mode)
{
	return write_file(path, buf, len, mode, 1);
}

int vbu_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		size_t want = len < IO_PIECE ? len : IO_PIECE;
		ssize_t n = write(fd, p, want);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vbu_pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *ret_got)
{
	char *p = buf;
	size_t got = 0;
	uint64_t end;

	if (off > INT64_MAX || __builtin_add_overflow(off, (uint64_t)len, &end) || end > INT64_MAX)
		return -EINVAL;
	while (got < len) {
		size_t want = len - got < IO_PIECE ? len - got : IO_PIECE;
		ssize_t n = pread(fd, p + got, want, (off_t)(off + got));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*ret_got = got;
	return 0;
}

void vbu_json_seed(void)
{
	json_object *o;
	int saved = dup(STDERR_FILENO), nul = open("/dev/null", O_WRONLY | O_CLOEXEC);

	/* json-c seeds its string hash on first use from getrandom() and, when that fails,
	 * prints a line of its own on stderr (then falls back to other sources). Seeded here,
	 * once, with stderr pointed away: no message of a library ever reaches the user. */
	if (saved >= 0 && nul >= 0)
		dup2(nul, STDERR_FILENO);
	o = json_tokener_parse("{\"seed\": 0}");
	json_object_put(o);
	if (saved >= 0 && nul >= 0)
		dup2(saved, STDERR_FILENO);
	if (saved >= 0)
		close(saved);
	if (nul >= 0)
		close(nul);
}
