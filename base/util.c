/* util.c: messages, hex, base64, time, sizes, uuids and names (see util.h). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "file.h"
#include "util.h"

/* Longest message line; longer ones are cut and end in "...". */
#define MSG_MAX 4096

/* Largest piece handed to the int-sized OpenSSL base64 calls (a multiple of 3 and of 4 that
 * fits in an int after encoding). */
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

static __thread char errmsg[VBU_ERRMSG_MAX];

int vbu_fail(int err, const char *fmt, ...)
{
	char msg[VBU_ERRMSG_MAX];
	va_list ap;

	/* Formatted aside first: the arguments may point into errmsg (a message that wraps the
	 * one a callee left). */
	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	memcpy(errmsg, msg, sizeof(errmsg));
	return err;
}

const char *vbu_errmsg(void)
{
	return errmsg;
}

void vbu_clear_err(void)
{
	errmsg[0] = '\0';
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

void vbu_uuid_format(const uint8_t b[16], char out[VBU_UUID_LEN + 1])
{
	char hex[33];

	vbu_hex_encode(b, 16, hex);
	snprintf(out, VBU_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
		 hex + 16, hex + 20);
}

int vbu_name_valid(const char *name)
{
	size_t n = 0;

	if (!name || !*name || name[0] == '.')
		return 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return n <= VBU_NAME_MAX;
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
