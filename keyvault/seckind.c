/* seckind.c: kinds of disk secrets and their forms (see seckind.h). */
#include <errno.h>
#include <string.h>

#include "seckind.h"
#include "util.h"

#define RECOVERY_LEN 55 /* 8 groups of 6 digits and 7 dashes */
#define BEK_HEADER_LEN 48
#define BEK_ENTRY_STARTUP_KEY 0x0006 /* entry type of the key in a .BEK file */
#define BEK_VALUE_EXTERNAL_KEY 0x0009

static const char *const names[] = {
    [VBK_KIND_NONE] = "",
    [VBK_KIND_LUKS] = "luks",
    [VBK_KIND_BITLK_PASSWORD] = "bitlocker-password",
    [VBK_KIND_BITLK_RECOVERY] = "bitlocker-recovery",
    [VBK_KIND_BITLK_STARTUP_KEY] = "bitlocker-startup-key",
};

const char *vbk_kind_name(vbk_kind k)
{
	return (size_t)k < VBU_ARRAY_SIZE(names) ? names[k] : "";
}

int vbk_kind_parse(const char *s, vbk_kind *ret)
{
	for (size_t i = 1; s && i < VBU_ARRAY_SIZE(names); i++)
		if (strcmp(s, names[i]) == 0) {
			*ret = (vbk_kind)i;
			return 0;
		}
	return -EINVAL;
}

int vbk_kind_is_bitlocker(vbk_kind k)
{
	return k == VBK_KIND_BITLK_PASSWORD || k == VBK_KIND_BITLK_RECOVERY ||
	       k == VBK_KIND_BITLK_STARTUP_KEY;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Which of the groups (1-8) is wrong, through *why; 0 when the form is right. */
static int recovery_check(const uint8_t *v, size_t len, const char **why)
{
	static const char *const bad_group[] = {
	    "group 1 fails its check", "group 2 fails its check", "group 3 fails its check",
	    "group 4 fails its check", "group 5 fails its check", "group 6 fails its check",
	    "group 7 fails its check", "group 8 fails its check"};

	if (len == RECOVERY_LEN + 1 && v[RECOVERY_LEN] == '\n') {
		*why = "it ends in a newline (store the 55 characters only, e.g. with printf '%s')";
		return -EINVAL;
	}
	if (len != RECOVERY_LEN) {
		*why = "it is not 55 characters long (8 groups of 6 digits separated by '-')";
		return -EINVAL;
	}
	for (size_t g = 0; g < 8; g++) {
		const uint8_t *p = v + g * 7;
		uint32_t n = 0;

		if (g < 7 && p[6] != '-') {
			*why = "it is not 8 groups of 6 digits separated by '-'";
			return -EINVAL;
		}
		for (size_t i = 0; i < 6; i++) {
			if (p[i] < '0' || p[i] > '9') {
				*why = "it is not 8 groups of 6 digits separated by '-'";
				return -EINVAL;
			}
			n = n * 10 + (uint32_t)(p[i] - '0');
		}
		/* Each group is 11 times a 16-bit piece of the key: BitLocker's own check. */
		if (n % 11 != 0 || n / 11 > 0xffff) {
			*why = bad_group[g];
			return -EINVAL;
		}
	}
	return 0;
}

static int bek_check(const uint8_t *v, size_t len, const char **why)
{
	uint16_t esize;

	if (len < BEK_HEADER_LEN + 8 || len > VBK_BEK_MAX) {
		*why = "it is not a .BEK file (wrong size)";
		return -EINVAL;
	}
	/* The header: total size, version 1, header size 48, a copy of the total size. */
	if (le32(v) != len || le32(v + 4) != 1 || le32(v + 8) != BEK_HEADER_LEN ||
	    le32(v + 12) != len) {
		*why = "it is not a .BEK file (no BitLocker key file header)";
		return -EINVAL;
	}
	esize = le16(v + BEK_HEADER_LEN);
	if (esize < 8 || esize > len - BEK_HEADER_LEN ||
	    le16(v + BEK_HEADER_LEN + 2) != BEK_ENTRY_STARTUP_KEY ||
	    le16(v + BEK_HEADER_LEN + 4) != BEK_VALUE_EXTERNAL_KEY) {
		*why = "it is not a .BEK file (no startup key entry)";
		return -EINVAL;
	}
	return 0;
}

/* UTF-8 text without control characters: what a BitLocker password typed on Windows is. */
static int password_check(const uint8_t *v, size_t len, const char **why)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = v[i];
		size_t n;
		uint32_t cp;

		if (c < 0x20 || c == 0x7f) {
			*why = c == '\n' ? "it contains a newline (store the password only, e.g. with "
					   "printf '%s')"
					 : "it contains a control character";
			return -EINVAL;
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			goto bad;
		if (len - i <= n)
			goto bad;
		for (size_t k = 1; k <= n; k++) {
			if ((v[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = cp << 6 | (v[i + k] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			goto bad;
		i += n + 1;
	}
	return 0;
bad:
	*why = "it is not UTF-8 text";
	return -EINVAL;
}

int vbk_kind_check(vbk_kind k, const uint8_t *v, size_t len, const char **ret_why)
{
	const char *why = NULL;
	int r = 0;

	if (len == 0) {
		why = "it is empty";
		r = -EINVAL;
	} else if (k == VBK_KIND_BITLK_RECOVERY) {
		r = recovery_check(v, len, &why);
	} else if (k == VBK_KIND_BITLK_STARTUP_KEY) {
		r = bek_check(v, len, &why);
	} else if (k == VBK_KIND_BITLK_PASSWORD) {
		r = password_check(v, len, &why);
	}
	if (r < 0 && ret_why)
		*ret_why = why;
	return r;
}

vbk_kind vbk_kind_classify_bitlocker(const uint8_t *v, size_t len)
{
	size_t n = len;
	int digits = 0;

	if (n == RECOVERY_LEN + 1 && v[RECOVERY_LEN] == '\n')
		n = RECOVERY_LEN;
	if (n == RECOVERY_LEN) {
		/* The shape alone (digits and dashes where they belong): a wrong checksum is then a
		 * wrong recovery password, not a user password. */
		digits = 1;
		for (size_t i = 0; i < n && digits; i++)
			digits = i % 7 == 6 ? v[i] == '-' : v[i] >= '0' && v[i] <= '9';
	}
	if (digits)
		return VBK_KIND_BITLK_RECOVERY;
	if (len >= BEK_HEADER_LEN && le32(v + 4) == 1 && le32(v + 8) == BEK_HEADER_LEN)
		return VBK_KIND_BITLK_STARTUP_KEY;
	return VBK_KIND_BITLK_PASSWORD;
}
