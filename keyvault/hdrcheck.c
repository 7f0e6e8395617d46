/* hdrcheck.c: a secret against a private copy of a disk's LUKS or BitLocker header (see
 * hdrcheck.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "file.h"
#include "hdrcheck.h"
#include "run.h"
#include "util.h"

#define SECTOR 512u
#define LUKS2_HDR_MAX (4u << 20) /* the largest LUKS2 binary header + JSON area */
#define RANGES_MAX 64

static const char *const helper_env[] = {VBK_HELPER_PATH, "LC_ALL=C", NULL};

const char *const *vbk_helper_env(void)
{
	return helper_env;
}

int vbk_helper_find(const char *name, char *out, size_t cap)
{
	static const char *const dirs[] = {VBK_HELPER_DIRS};
	struct stat st;
	int n;

	for (size_t i = 0; i < VBU_ARRAY_SIZE(dirs); i++) {
		n = snprintf(out, cap, "%s/%s", dirs[i], name);
		if (n < 0 || (size_t)n >= cap)
			return -ENAMETOOLONG;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

/* ---- which bytes are the header ---- */

typedef struct range {
	uint64_t off, len;
} range;

typedef struct ranges {
	range r[RANGES_MAX];
	size_t n;
} ranges;

static int add_range_any(ranges *rs, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	if (rs->n == RANGES_MAX)
		return -EFBIG;
	rs->r[rs->n].off = off;
	rs->r[rs->n].len = len;
	rs->n++;
	return 0;
}

/* A range of a LUKS header area, which must end within VBK_HDR_AREA_MAX. */
static int add_range(ranges *rs, uint64_t off, uint64_t len)
{
	if (off > VBK_HDR_AREA_MAX || len > VBK_HDR_AREA_MAX - off)
		return -EFBIG;
	return add_range_any(rs, off, len);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* A decimal string of the LUKS2 JSON ("32768"). */
/* Where the header is read from: a descriptor, or a reader (a stored image). */
typedef struct hsrc {
	int fd;
	vbk_hdr_reader fn;
	void *arg;
} hsrc;

static int src_pread(const hsrc *s, void *buf, size_t len, uint64_t off, size_t *ret_got)
{
	if (s->fn)
		return s->fn(s->arg, buf, len, off, ret_got);
	return vbu_pread_full(s->fd, buf, len, off, ret_got);
}

static int json_u64str(json_object *o, const char *key, uint64_t *ret)
{
	json_object *j;
	const char *s;
	char *end;
	unsigned long long v;

	if (!json_object_object_get_ex(o, key, &j) || !json_object_is_type(j, json_type_string))
		return -EPROTO;
	s = json_object_get_string(j);
	if (!*s || *s == '-')
		return -EPROTO;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EPROTO;
	*ret = v;
	return 0;
}

/* The key slot areas named by the JSON area of a LUKS2 header at off (hdr_size bytes). 0 when
 * it parses (ranges added), -EPROTO when not. */
static int luks2_areas(const hsrc *fd, uint64_t off, uint64_t hdr_size, ranges *rs)
{
	json_object *root = NULL, *slots;
	char *buf = NULL;
	size_t got = 0, n = (size_t)(hdr_size - 4096);
	int r;

	buf = malloc(n + 1);
	if (!buf)
		return -ENOMEM;
	r = src_pread(fd, buf, n, off + 4096, &got);
	if (r < 0)
		goto out;
	buf[got] = '\0';
	root = json_tokener_parse(buf); /* the area is NUL-padded after the JSON text */
	r = -EPROTO;
	if (!root || !json_object_object_get_ex(root, "keyslots", &slots) ||
	    !json_object_is_type(slots, json_type_object))
		goto out;
	r = 0;
	json_object_object_foreach(slots, k, ks)
	{
		json_object *area;
		uint64_t ao, as;

		(void)k;
		if (!json_object_object_get_ex(ks, "area", &area) ||
		    json_u64str(area, "offset", &ao) < 0 || json_u64str(area, "size", &as) < 0) {
			r = -EPROTO;
			break;
		}
		r = add_range(rs, ao, as);
		if (r < 0)
			break;
	}
out:
	json_object_put(root);
	free(buf);
	return r;
}

/* ---- BitLocker ---- */

#define BITLK_FVE_AREA (64u << 10) /* an FVE metadata area */
#define BITLK_FVE_HEADERS 112	   /* its block header (64 bytes) and metadata header (48) */
#define BITLK_COPY_MAX (16u << 20) /* the most copied of one region named by the metadata */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint64_t min3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a < b ? a : b;

	return m < c ? m : c;
}

/* Whether the volume at fd (size bytes, h its first got bytes) is BitLocker: 1, with its
 * metadata in rs, 0 when not, or -errno. The volume header (first sector) says "-FVE-FS-"
 * (BitLocker) or "MSWIN4.1" (BitLocker To Go, a FAT32 boot sector, so only with an FVE metadata
 * block where it points), and gives the offsets of the three FVE metadata blocks (at 160, or
 * at 424 for To Go, after a 16-byte GUID). What cryptsetup reads to test a secret: the first
 * sector, the FVE metadata (block header, metadata header, then metadata_size - fve_size bytes
 * of entries: the protectors, VMKs and FVEK) of the first block, and of the others where it
 * falls back to them; also copied, the encrypted NTFS boot sector (the "volume header" the
 * metadata names), which opening reads. */
static int bitlk_ranges(const hsrc *fd, const uint8_t *h, size_t got, uint64_t size, ranges *rs)
{
	uint8_t b[BITLK_FVE_HEADERS];
	uint64_t off[3];
	size_t at, n = 0;
	int r, found, vh = 0;

	if (got < 512)
		return 0;
	if (memcmp(h + 3, "-FVE-FS-", 8) == 0)
		at = 160;
	else if (memcmp(h + 3, "MSWIN4.1", 8) == 0)
		at = 424;
	else
		return 0;
	found = at == 160;
	for (int i = 0; i < 3; i++)
		off[i] = le64(h + at + 16 + 8 * i);
	rs->n = 0;
	if ((r = add_range_any(rs, 0, 4096)) < 0)
		return r;
	for (int i = 0; i < 3; i++) {
		uint64_t len = BITLK_FVE_AREA, msize, fsize;

		if (off[i] == 0 || off[i] >= size || size - off[i] < BITLK_FVE_HEADERS)
			continue;
		r = src_pread(fd, b, sizeof(b), off[i], &n);
		if (r < 0)
			return r;
		if (n == sizeof(b) && memcmp(b, "-FVE-FS-", 8) == 0) {
			found = 1;
			msize = le32(b + 64);
			fsize = le16(b + 8);
			if (msize > fsize && BITLK_FVE_HEADERS + (msize - fsize) > len)
				len = BITLK_FVE_HEADERS + (msize - fsize);
			if (!vh) {
				uint64_t vo = le64(b + 56), vs = le32(b + 28);

				vh = 1;
				if (vo > 0 && vo < size &&
				    (r = add_range_any(rs, vo, min3(vs, BITLK_COPY_MAX, size - vo))) < 0)
					return r;
			}
		}
		if ((r = add_range_any(rs, off[i], min3(len, BITLK_COPY_MAX, size - off[i]))) < 0)
			return r;
	}
	if (!found)
		rs->n = 0;
	return found;
}

/* The header area of the LUKS or BitLocker device at fd (size bytes), and which it is. */
static int header_ranges(const hsrc *fd, uint64_t size, ranges *rs, vbk_hdr_type *ret_type)
{
	static const uint64_t offs[] = {0,	16384,	32768,	 65536,	  131072,
					262144, 524288, 1048576, 2097152, 4194304};
	uint8_t h[4096];
	size_t got = 0;
	int r, found = 0;

	rs->n = 0;
	*ret_type = VBK_HDR_OTHER;
	r = src_pread(fd, h, sizeof(h), 0, &got);
	if (r < 0)
		return r;
	r = bitlk_ranges(fd, h, got, size, rs);
	if (r != 0) {
		if (r > 0)
			*ret_type = VBK_HDR_BITLK;
		return r < 0 ? r : 0;
	}
	if (got >= 592 && memcmp(h, "LUKS\xba\xbe", 6) == 0 && h[6] == 0 && h[7] == 1) {
		/* LUKS1: the phdr (592 bytes) and 8 key slots at 208, 48 bytes each: active,
		 * iterations, salt[32], key material offset (sectors), stripes. */
		uint32_t key_bytes = be32(h + 108);

		*ret_type = VBK_HDR_LUKS;
		if ((r = add_range(rs, 0, 4096)) < 0)
			return r;
		for (int i = 0; i < 8; i++) {
			const uint8_t *ks = h + 208 + 48 * i;
			uint64_t kmo = (uint64_t)be32(ks + 40) * SECTOR;
			uint64_t len = (uint64_t)key_bytes * be32(ks + 44);

			if (be32(ks) != 0x00AC71F3) /* LUKS_KEY_ENABLED */
				continue;
			len = (len + SECTOR - 1) / SECTOR * SECTOR;
			if ((r = add_range(rs, kmo, len)) < 0)
				return r;
		}
		return 0;
	}
	/* LUKS2: the primary at 0, or (its magic damaged) a secondary at an offset LUKS2 allows.
	 * Both binary headers with their JSON areas, and the key slot areas of every copy that
	 * parses. */
	for (size_t i = 0; i < VBU_ARRAY_SIZE(offs); i++) {
		uint64_t hs, ho;

		if (offs[i] + 4096 > size)
			break;
		if (i > 0 && (r = src_pread(fd, h, sizeof(h), offs[i], &got)) < 0)
			return r;
		if (got < 4096 || h[6] != 0 || h[7] != 2 ||
		    (memcmp(h, "LUKS\xba\xbe", 6) != 0 && memcmp(h, "SKUL\xba\xbe", 6) != 0))
			continue;
		hs = be64(h + 8);
		ho = be64(h + 256);
		if (hs < 16384 || hs > LUKS2_HDR_MAX || (hs & 4095) || ho != offs[i])
			continue;
		/* Primary and secondary: [0, 2 * hdr_size). */
		if (!found && (r = add_range(rs, 0, 2 * hs)) < 0)
			return r;
		found = 1;
		r = luks2_areas(fd, offs[i], hs, rs);
		if (r < 0 && r != -EPROTO)
			return r;
	}
	if (!found)
		return add_range(rs, 0, 4096); /* not LUKS: cryptsetup will say so */
	*ret_type = VBK_HDR_LUKS;
	return 0;
}

/* ---- the private copy ---- */

static int copy_ranges(const hsrc *src, int dst, uint64_t size, const ranges *rs)
{
	uint8_t *buf;
	size_t chunk = 1u << 20;
	int r = 0;

	buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < rs->n && r == 0; i++) {
		uint64_t off = rs->r[i].off, end = rs->r[i].off + rs->r[i].len;

		if (end > size)
			end = size;
		while (off < end && r == 0) {
			size_t want = (size_t)(end - off < chunk ? end - off : chunk), got = 0;

			r = src_pread(src, buf, want, off, &got);
			if (r == 0 && got == 0)
				break;
			if (r == 0 && pwrite(dst, buf, got, (off_t)off) != (ssize_t)got)
				r = errno ? -errno : -EIO;
			off += got;
		}
	}
	free(buf);
	if (r == 0 && ftruncate(dst, (off_t)size) < 0)
		r = -errno;
	return r;
}

/* ---- running cryptsetup ---- */

static int run_cryptsetup(const char *helper, vbk_hdr_type type, const char *dev,
			  const uint8_t *secret, size_t len)
{
	/* BitLocker: a password, a recovery password or a .BEK file's bytes all go in as the key
	 * file; cryptsetup tries each protector of the volume with them. Anything that is not
	 * BitLocker is tried as LUKS, and cryptsetup says when it is not. */
	char *const argv_luks[] = {(char *)"cryptsetup",
				   (char *)"luksOpen",
				   (char *)"--test-passphrase",
				   (char *)"--readonly",
				   (char *)"--key-file=-",
				   (char *)"--",
				   (char *)dev,
				   NULL};
	char *const argv_bitlk[] = {(char *)"cryptsetup",
				    (char *)"open",
				    (char *)"--type",
				    (char *)"bitlk",
				    (char *)"--test-passphrase",
				    (char *)"--readonly",
				    (char *)"--key-file=-",
				    (char *)"--",
				    (char *)dev,
				    NULL};
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	int r;

	o.path = helper;
	o.argv = type == VBK_HDR_BITLK ? argv_bitlk : argv_luks;
	o.envp = (char *const *)helper_env;
	o.input = secret;
	o.input_len = len;
	o.timeout_s = VBK_HELPER_TIMEOUT;
	r = vbu_run(&o, &res);
	if (r < 0)
		return r;
	if (res.status < 0)
		return -EINTR;
	return res.status;
}

static const char *tmp_base(void)
{
	const char *t = getenv("TMPDIR");

	return t && t[0] == '/' && strlen(t) < 200 ? t : "/tmp";
}

/* The source opened read-only, its size and header area. */
static int open_source(const char *source, int *ret_fd, uint64_t *ret_size, ranges *rs,
		       vbk_hdr_type *ret_type)
{
	struct stat st;
	uint64_t size;
	int src, r;

	src = open(source, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (src < 0)
		return -errno;
	if (fstat(src, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(src, 0, SEEK_END);

		if (end < 0) {
			r = -errno;
			goto out;
		}
		size = (uint64_t)end;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		r = -EINVAL;
		goto out;
	}
	r = header_ranges(&(hsrc){.fd = src}, size, rs, ret_type);
	if (r < 0)
		goto out;
	*ret_fd = src;
	*ret_size = size;
	src = -1;
	r = 0;
out:
	if (src >= 0)
		close(src);
	return r;
}

int vbk_hdr_probe(const char *source, vbk_hdr_type *ret)
{
	ranges rs;
	uint64_t size;
	int fd = -1, r;

	r = open_source(source, &fd, &size, &rs, ret);
	if (fd >= 0)
		close(fd);
	return r;
}

/* Copies the header area of src into a private file and runs cryptsetup on it. */
static int check_src(const char *helper, const hsrc *src, uint64_t size, const ranges *rs,
		     vbk_hdr_type type, const uint8_t *secret, size_t len)
{
	char dir[256], file[300];
	int dst = -1, made_dir = 0, r;

	snprintf(dir, sizeof(dir), "%s/vmbak-hdrcheck.XXXXXX", tmp_base());
	if (!mkdtemp(dir))
		return -errno;
	made_dir = 1;
	snprintf(file, sizeof(file), "%s/header", dir);
	dst = open(file, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (dst < 0) {
		r = -errno;
		goto out;
	}
	r = copy_ranges(src, dst, size, rs);
	if (r == -EFBIG || r == -EINVAL) {
		/* A file system that cannot hold a sparse file that long: the header area will do.
		 */
		uint64_t end = 0;

		for (size_t i = 0; i < rs->n; i++)
			if (rs->r[i].off + rs->r[i].len > end)
				end = rs->r[i].off + rs->r[i].len;
		r = ftruncate(dst, (off_t)(end < size ? end : size)) < 0 ? -errno : 0;
	}
	if (r < 0)
		goto out;
	r = run_cryptsetup(helper, type, file, secret, len);
out:
	if (dst >= 0)
		close(dst);
	if (made_dir) {
		unlink(file);
		rmdir(dir);
	}
	return r;
}

int vbk_hdr_check_with(const char *helper, const char *source, const uint8_t *secret, size_t len)
{
	vbk_hdr_type type;
	ranges rs;
	uint64_t size;
	int src = -1, r;

	r = open_source(source, &src, &size, &rs, &type);
	if (r < 0)
		return r;
	r = check_src(helper, &(hsrc){.fd = src}, size, &rs, type, secret, len);
	close(src);
	return r;
}

int vbk_hdr_check_reader(vbk_hdr_reader fn, void *arg, uint64_t size, const uint8_t *secret,
			 size_t len, vbk_hdr_type *ret_type)
{
	char helper[PATH_MAX];
	hsrc src = {.fd = -1, .fn = fn, .arg = arg};
	vbk_hdr_type type;
	ranges rs;
	int r;

	r = header_ranges(&src, size, &rs, &type);
	if (r < 0)
		return r;
	if (ret_type)
		*ret_type = type;
	r = vbk_helper_find("cryptsetup", helper, sizeof(helper));
	if (r < 0)
		return r;
	return check_src(helper, &src, size, &rs, type, secret, len);
}

int vbk_hdr_probe_reader(vbk_hdr_reader fn, void *arg, uint64_t size, vbk_hdr_type *ret)
{
	hsrc src = {.fd = -1, .fn = fn, .arg = arg};
	ranges rs;

	return header_ranges(&src, size, &rs, ret);
}

int vbk_hdr_check(const char *source, const uint8_t *secret, size_t len)
{
	char helper[PATH_MAX];
	int r = vbk_helper_find("cryptsetup", helper, sizeof(helper));

	if (r < 0)
		return r;
	return vbk_hdr_check_with(helper, source, secret, len);
}
