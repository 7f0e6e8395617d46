/* util_test.c: base/ (messages, hex, base64, time, sizes, uuids, names, files, JSON). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "json.h"
#include "util.h"
#include "unit.h"

static char tmpdir[PATH_MAX];

static void path_in_tmp(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", tmpdir, name);
	if (n < 0 || (size_t)n >= len)
		abort();
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static void test_hex(void)
{
	const uint8_t in[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
	uint8_t out[5], big[5];
	char hex[11];

	vbu_hex_encode(in, sizeof(in), hex);
	CHECK_EQ_STR(hex, "0001abff7f");
	vbu_hex_encode(in, 0, hex);
	CHECK_EQ_STR(hex, "");

	CHECK_EQ_INT(vbu_hex_decode("0001abff7f", out, sizeof(out)), 0);
	CHECK_EQ_MEM(out, in, sizeof(in));
	CHECK_EQ_INT(vbu_hex_decode("0001ABFF7F", out, sizeof(out)), 0);
	CHECK_EQ_MEM(out, in, sizeof(in));
	CHECK_EQ_INT(vbu_hex_decode("", out, 0), 0);

	memset(big, 0x55, sizeof(big));
	CHECK_EQ_INT(vbu_hex_decode("0001abff7", big, sizeof(big)), -EINVAL);	/* short */
	CHECK_EQ_INT(vbu_hex_decode("0001abff7f0", big, sizeof(big)), -EINVAL); /* long */
	CHECK_EQ_INT(vbu_hex_decode("0001abff7g", big, sizeof(big)), -EINVAL);	/* not hex */
	CHECK_EQ_INT(vbu_hex_decode(" 001abff7f", big, sizeof(big)), -EINVAL);
	CHECK_EQ_INT(vbu_hex_decode("0x01abff7f", big, sizeof(big)), -EINVAL);
	CHECK_EQ_INT(vbu_hex_decode(NULL, big, sizeof(big)), -EINVAL);
	/* Nothing written on failure. */
	CHECK(big[0] == 0x55 && big[4] == 0x55);
}

static void test_base64_vectors(void)
{
	/* RFC 4648 section 10. */
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"",	      "Zg==",	  "Zm8=",    "Zm9v",
					  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	size_t i;

	for (i = 0; i < VBU_ARRAY_SIZE(plain); i++) {
		uint8_t out[16];
		size_t got = 999;
		char *e = vbu_base64_encode((const uint8_t *)plain[i], strlen(plain[i]));

		CHECK_EQ_STR(e, enc[i]);
		free(e);
		CHECK_EQ_INT(vbu_base64_decode(enc[i], out, sizeof(out), &got), 0);
		CHECK_EQ_INT(got, strlen(plain[i]));
		CHECK_EQ_MEM(out, plain[i], strlen(plain[i]));
		/* An exactly sized buffer is enough (padding is not written out). */
		CHECK_EQ_INT(vbu_base64_decode(enc[i], out, strlen(plain[i]), &got), 0);
		CHECK_EQ_INT(got, strlen(plain[i]));
		if (strlen(plain[i]) > 0)
			CHECK_EQ_INT(vbu_base64_decode(enc[i], out, strlen(plain[i]) - 1, &got),
				     -ENOSPC);
	}
}

static void test_base64_roundtrip(void)
{
	uint8_t in[300], out[300];
	size_t len;
	unsigned seed = 12345;

	for (len = 0; len < sizeof(in); len++) {
		size_t i, got = 0;
		char *e;

		for (i = 0; i < len; i++) {
			seed = seed * 1103515245 + 12345;
			in[i] = (uint8_t)(seed >> 16);
		}
		e = vbu_base64_encode(in, len);
		CHECK(e != NULL);
		if (!e)
			continue;
		CHECK_EQ_INT(strlen(e), (len + 2) / 3 * 4);
		memset(out, 0xee, sizeof(out));
		CHECK_EQ_INT(vbu_base64_decode(e, out, len, &got), 0);
		CHECK_EQ_INT(got, len);
		CHECK_EQ_MEM(out, in, len);
		free(e);
	}
}

static void test_base64_malformed(void)
{
	static const char *const bad[] = {
	    "Zg=",	/* length not a multiple of 4 */
	    "Zg",	/* missing padding */
	    "Zm9vY",	/* truncated */
	    "Z===",	/* too much padding */
	    "====",	/* only padding */
	    "Zm=v",	/* padding in the middle */
	    "Zg==Zm8=", /* padding before the end */
	    "Zh==",	/* nonzero bits under the padding */
	    "Zm9=",	/* same, one '=' */
	    "Zm9v\n",	/* whitespace */
	    " Zm9v",	/* leading blank */
	    "Zm 9",	/* inner blank */
	    "Zm9-",	/* URL-safe alphabet */
	    "Zm9_",	"@@@@", "Zm9v====",
	};
	uint8_t out[16];
	size_t i, got = 777;

	for (i = 0; i < VBU_ARRAY_SIZE(bad); i++) {
		int r = vbu_base64_decode(bad[i], out, sizeof(out), &got);
		CHECK_EQ_INT(r, -EINVAL);
		if (r != -EINVAL)
			fprintf(stderr, "    input \"%s\"\n", bad[i]);
	}
	CHECK_EQ_INT(vbu_base64_decode(NULL, out, sizeof(out), &got), -EINVAL);
	CHECK_EQ_INT(got, 777); /* not written on failure */
}

static void test_time(void)
{
	char buf[21];
	int64_t t = -1, now, m1, m2;

	vbu_format_time(0, buf);
	CHECK_EQ_STR(buf, "1970-01-01T00:00:00Z");
	vbu_format_time(1709164800 + 3661, buf);
	CHECK_EQ_STR(buf, "2024-02-29T01:01:01Z");
	vbu_format_time(-5, buf); /* clamped */
	CHECK_EQ_STR(buf, "1970-01-01T00:00:00Z");
	vbu_format_time(INT64_MAX, buf);
	CHECK_EQ_STR(buf, "9999-12-31T23:59:59Z");

	now = vbu_now_ns();
	CHECK(now > INT64_C(1600000000) * 1000000000);
	m1 = vbu_mono_ns();
	m2 = vbu_mono_ns();
	CHECK(m2 >= m1);

	CHECK_EQ_INT(vbu_parse_date("2024-02-29", &t), 0);
	CHECK_EQ_INT(t, 1709164800);
	CHECK_EQ_INT(vbu_parse_date("1970-01-01", &t), 0);
	CHECK_EQ_INT(t, 0);
	CHECK_EQ_INT(vbu_parse_date("2000-02-29", &t), 0); /* divisible by 400: leap */
	CHECK_EQ_INT(t, 951782400);
	CHECK_EQ_INT(vbu_parse_date("9999-12-31", &t), 0);
	CHECK_EQ_INT(t, INT64_C(253402300799) - 86399);

	t = 42;
	CHECK_EQ_INT(vbu_parse_date("2026-02-29", &t), -EINVAL); /* not a leap year */
	CHECK_EQ_INT(vbu_parse_date("2026-02-30", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("1900-02-29", &t), -EINVAL); /* century: not leap */
	CHECK_EQ_INT(vbu_parse_date("2026-04-31", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-13-01", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-00-10", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-01-00", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-01-32", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-1-01", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-01-1", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-01-01x", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date(" 2026-01-01", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026/01/01", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("2026-0a-01", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("+026-01-01", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("20260101", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date("", &t), -EINVAL);
	CHECK_EQ_INT(vbu_parse_date(NULL, &t), -EINVAL);
	CHECK_EQ_INT(t, 42);
}

static void test_parse_size(void)
{
	static const struct {
		const char *s;
		int r;
		uint64_t v;
	} cases[] = {
	    {"0", 0, 0},
	    {"123", 0, 123},
	    {"512B", 0, 512},
	    {"1K", 0, 1024},
	    {"1k", 0, 1024},
	    {"1KiB", 0, 1024},
	    {"1KB", 0, 1024},
	    {"64K", 0, 65536},
	    {"2M", 0, 2 << 20},
	    {"2MiB", 0, 2 << 20},
	    {"3G", 0, UINT64_C(3) << 30},
	    {"1T", 0, UINT64_C(1) << 40},
	    {"007", 0, 7},
	    {"18446744073709551615", 0, UINT64_MAX},
	    {"16777215T", 0, UINT64_C(16777215) << 40},
	    {"18446744073709551616", -ERANGE, 0},
	    {"99999999999999999999999", -ERANGE, 0},
	    {"16777216T", -ERANGE, 0},
	    {"17179869184G", -ERANGE, 0},
	    {"", -EINVAL, 0},
	    {"K", -EINVAL, 0},
	    {"-1", -EINVAL, 0},
	    {"+1", -EINVAL, 0},
	    {" 1", -EINVAL, 0},
	    {"1 ", -EINVAL, 0},
	    {"1 K", -EINVAL, 0},
	    {"1.5G", -EINVAL, 0},
	    {"1Ki", -EINVAL, 0},
	    {"1KiBx", -EINVAL, 0},
	    {"1iB", -EINVAL, 0},
	    {"1X", -EINVAL, 0},
	    {"1P", -EINVAL, 0},
	    {"0x10", -EINVAL, 0},
	};
	size_t i;

	for (i = 0; i < VBU_ARRAY_SIZE(cases); i++) {
		uint64_t v = 4242;
		int r = vbu_parse_size(cases[i].s, &v);

		CHECK_EQ_INT(r, cases[i].r);
		if (r != cases[i].r)
			fprintf(stderr, "    input \"%s\"\n", cases[i].s);
		if (cases[i].r == 0)
			CHECK(v == cases[i].v);
		else
			CHECK(v == 4242);
	}
	CHECK_EQ_INT(vbu_parse_size(NULL, &(uint64_t){0}), -EINVAL);
}

/* Runs fn with stderr sent to a file and returns what it printed (static buffer). */
static const char *capture_stderr(void (*fn)(void))
{
	static char out[8192];
	char path[PATH_MAX];
	int fd, saved;
	ssize_t n;

	path_in_tmp(path, sizeof(path), "stderr");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return out;
}

static void say_plain(void)
{
	vbu_err("cannot open vault '%s'", "/srv/v");
}

static void say_errno(void)
{
	errno = EBADF;
	vbu_errno(-ENOENT, "cannot open vault '%s'", "/srv/v");
	/* errno is preserved across messages */
	if (errno != EBADF)
		vbu_err("errno changed");
}

static void say_long(void)
{
	char big[6000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	vbu_err("long %s", big);
}

static void test_messages(void)
{
	const char *s;

	vbu_set_progname("/usr/local/bin/vmbak-test");
	CHECK_EQ_STR(vbu_progname(), "vmbak-test");
	CHECK_EQ_STR(capture_stderr(say_plain), "vmbak-test: cannot open vault '/srv/v'\n");
	CHECK_EQ_STR(capture_stderr(say_errno),
		     "vmbak-test: cannot open vault '/srv/v': No such file or directory\n");
	s = capture_stderr(say_long);
	CHECK(strlen(s) < 4097);
	CHECK(strncmp(s, "vmbak-test: long xxx", 20) == 0);
	CHECK(strlen(s) > 4 && strcmp(s + strlen(s) - 4, "...\n") == 0);
	vbu_set_progname("vmbak");
	CHECK_EQ_STR(vbu_progname(), "vmbak");

	CHECK_EQ_STR(vbu_strerror(ENOENT), "No such file or directory");
	CHECK_EQ_STR(vbu_strerror(ENOKEY), "Required key not available");
	CHECK(vbu_strerror(99999) != NULL);
	CHECK(vbu_strerror(-1) != NULL);
}

/* Names in tmpdir other than the given one (leftover temporary files). */
static int others_in_tmp(const char *keep)
{
	char cmd[PATH_MAX + 64];
	FILE *f;
	int n = 0, c;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -v -x '%s'", tmpdir, keep);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		if (c == '\n')
			n++;
	pclose(f);
	return n;
}

static void test_write_atomic(void)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32], sub[PATH_MAX];
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	mode_t old = umask(022);

	path_in_tmp(path, sizeof(path), "config");
	CHECK_EQ_INT(vbu_write_file_atomic(path, "hello\n", 6, 0600), 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	CHECK_EQ_INT(vbu_read_file(path, 100, &buf, &len), 0);
	CHECK_EQ_INT(len, 6);
	CHECK(buf && memcmp(buf, "hello\n", 7) == 0); /* with the NUL */
	free(buf);
	buf = NULL;
	CHECK_EQ_INT(others_in_tmp("config"), 0);

	/* Replacing keeps the new content and mode, nothing left behind. */
	CHECK_EQ_INT(vbu_write_file_atomic(path, "bye", 3, 0644), 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0644);
	CHECK_EQ_INT(vbu_read_file(path, 100, &buf, &len), 0);
	CHECK(len == 3 && buf && strcmp(buf, "bye") == 0);
	free(buf);
	buf = NULL;
	CHECK_EQ_INT(others_in_tmp("config"), 0);

	/* Empty content. */
	CHECK_EQ_INT(vbu_write_file_atomic(path, "", 0, 0600), 0);
	CHECK(stat(path, &st) == 0 && st.st_size == 0);

	/* A stale temporary file of the same name (an earlier process of this pid was killed
	 * mid-write) is not reused but removed: the write works, and a symbolic link there is not
	 * followed (what it points to stays as it is). */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	CHECK(close(open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600)) == 0);
	CHECK_EQ_INT(vbu_write_file_atomic(path, "x", 1, 0600), 0);
	CHECK(stat(path, &st) == 0 && st.st_size == 1);
	CHECK(access(tmp, F_OK) != 0);
	path_in_tmp(sub, sizeof(sub), "victim");
	CHECK_EQ_INT(vbu_write_file_atomic(sub, "keep", 4, 0600), 0);
	CHECK(symlink(sub, tmp) == 0);
	CHECK_EQ_INT(vbu_write_file_atomic(path, "", 0, 0600), 0);
	CHECK(stat(path, &st) == 0 && st.st_size == 0);
	CHECK(stat(sub, &st) == 0 && st.st_size == 4);
	CHECK(access(tmp, F_OK) != 0 && errno == ENOENT);
	CHECK(unlink(sub) == 0);

	/* The rename fails (a directory is in the way): the temporary file is removed. */
	path_in_tmp(sub, sizeof(sub), "adir");
	CHECK(mkdir(sub, 0700) == 0);
	snprintf(tmp, sizeof(tmp), "%s/f", sub);
	CHECK(close(open(tmp, O_WRONLY | O_CREAT, 0600)) == 0);
	CHECK_EQ_INT(vbu_write_file_atomic(sub, "data", 4, 0600), -EEXIST);
	CHECK(stat(sub, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK(unlink(tmp) == 0);
	CHECK(rmdir(sub) == 0);
	CHECK_EQ_INT(others_in_tmp("config"), 0);

	/* Something that is not a regular file is never replaced by one (unwrap --output
	 * /dev/null must not turn the device node into a file holding a secret): a FIFO, and a
	 * symlink to a device. */
	path_in_tmp(sub, sizeof(sub), "fifo");
	CHECK(mkfifo(sub, 0600) == 0);
	CHECK_EQ_INT(vbu_write_file_atomic(sub, "secret", 6, 0600), -EEXIST);
	CHECK(lstat(sub, &st) == 0 && S_ISFIFO(st.st_mode));
	CHECK(unlink(sub) == 0);
	path_in_tmp(sub, sizeof(sub), "devlink");
	CHECK(symlink("/dev/null", sub) == 0);
	CHECK_EQ_INT(vbu_write_file_atomic(sub, "secret", 6, 0600), -EEXIST);
	CHECK(lstat(sub, &st) == 0 && S_ISLNK(st.st_mode));
	CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
	CHECK(unlink(sub) == 0);
	CHECK_EQ_INT(vbu_target_regular(path), 0);
	CHECK_EQ_INT(vbu_target_regular("/dev/null"), -EEXIST);
	CHECK_EQ_INT(others_in_tmp("config"), 0);

	/* A missing directory: nothing created. */
	path_in_tmp(sub, sizeof(sub), "missing/config");
	CHECK_EQ_INT(vbu_write_file_atomic(sub, "data", 4, 0600), -ENOENT);
	CHECK_EQ_INT(others_in_tmp("config"), 0);
	CHECK_EQ_INT(vbu_write_file_atomic("", "data", 4, 0600), -EINVAL);

	CHECK(unlink(path) == 0);
	umask(old);
}

static void test_read_file(void)
{
	char path[PATH_MAX], fdpath[64];
	uint8_t *data = malloc(1 << 20);
	char *buf = NULL;
	size_t len = 0, i;
	int fds[2];

	path_in_tmp(path, sizeof(path), "big");
	for (i = 0; i < (1 << 20); i++)
		data[i] = (uint8_t)(i * 7 + (i >> 11));
	CHECK_EQ_INT(vbu_write_file_atomic(path, data, 1 << 20, 0600), 0);
	CHECK_EQ_INT(vbu_read_file(path, 1 << 20, &buf, &len), 0);
	CHECK_EQ_INT(len, 1 << 20);
	CHECK(buf && memcmp(buf, data, 1 << 20) == 0 && buf[len] == '\0');
	free(buf);
	buf = NULL;
	len = 5;
	CHECK_EQ_INT(vbu_read_file(path, (1 << 20) - 1, &buf, &len), -EFBIG);
	CHECK(buf == NULL && len == 5);
	CHECK(unlink(path) == 0);

	/* Empty file. */
	CHECK_EQ_INT(vbu_write_file_atomic(path, "", 0, 0600), 0);
	CHECK_EQ_INT(vbu_read_file(path, 0, &buf, &len), 0);
	CHECK(len == 0 && buf && buf[0] == '\0');
	free(buf);
	buf = NULL;
	CHECK(unlink(path) == 0);

	CHECK_EQ_INT(vbu_read_file(path, 100, &buf, &len), -ENOENT);
	CHECK_EQ_INT(vbu_read_file(tmpdir, 100, &buf, &len), -EISDIR);

	/* A pipe (what --passphrase-file <(cmd) gives): read to its end. */
	CHECK(pipe(fds) == 0);
	CHECK(write(fds[1], "from a pipe\n", 12) == 12);
	close(fds[1]);
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fds[0]);
	CHECK_EQ_INT(vbu_read_file(fdpath, 100, &buf, &len), 0);
	CHECK(len == 12 && buf && strcmp(buf, "from a pipe\n") == 0);
	free(buf);
	close(fds[0]);

	/* A pipe with more than max. */
	CHECK(pipe(fds) == 0);
	CHECK(write(fds[1], "0123456789", 10) == 10);
	close(fds[1]);
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fds[0]);
	buf = NULL;
	CHECK_EQ_INT(vbu_read_file(fdpath, 9, &buf, &len), -EFBIG);
	CHECK(buf == NULL);
	close(fds[0]);
	free(data);
}

static void test_io(void)
{
	char path[PATH_MAX], buf[32];
	size_t got = 99;
	int fd;

	path_in_tmp(path, sizeof(path), "io");
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ_INT(vbu_write_all(fd, "0123456789", 10), 0);
	CHECK_EQ_INT(vbu_write_all(fd, "", 0), 0);
	CHECK_EQ_INT(vbu_pread_full(fd, buf, 4, 3, &got), 0);
	CHECK(got == 4 && memcmp(buf, "3456", 4) == 0);
	CHECK_EQ_INT(vbu_pread_full(fd, buf, 32, 6, &got), 0); /* EOF first */
	CHECK(got == 4 && memcmp(buf, "6789", 4) == 0);
	CHECK_EQ_INT(vbu_pread_full(fd, buf, 8, 100, &got), 0);
	CHECK_EQ_INT(got, 0);
	got = 99;
	CHECK_EQ_INT(vbu_pread_full(fd, buf, 8, UINT64_MAX - 2, &got), -EINVAL);
	CHECK_EQ_INT(got, 99);
	CHECK_EQ_INT(vbu_pread_full(-1, buf, 8, 0, &got), -EBADF);
	CHECK_EQ_INT(vbu_write_all(-1, "x", 1), -EBADF);
	close(fd);
	unlink(path);
}

/* The one thread-local message: set, read, cleared, and a message wrapping the one before. */
static void test_fail_message(void)
{
	vbu_clear_err();
	CHECK_EQ_STR(vbu_errmsg(), "");
	CHECK_EQ_INT(vbu_fail(-EIO, "cannot read '%s'", "x"), -EIO);
	CHECK_EQ_STR(vbu_errmsg(), "cannot read 'x'");
	CHECK_EQ_INT(vbu_fail(-EBADMSG, "vault 'v': %s (%d)", vbu_errmsg(), 7), -EBADMSG);
	CHECK_EQ_STR(vbu_errmsg(), "vault 'v': cannot read 'x' (7)");
	vbu_clear_err();
	CHECK_EQ_STR(vbu_errmsg(), "");
}

static void test_uuid_and_names(void)
{
	const uint8_t b[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
			       0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
	char u[VBU_UUID_LEN + 1], name[VBU_NAME_MAX + 2];

	vbu_uuid_format(b, u);
	CHECK_EQ_STR(u, "01234567-89ab-cdef-fedc-ba9876543210");
	CHECK(vbu_name_valid("vm-1.disk_A"));
	CHECK(!vbu_name_valid(NULL) && !vbu_name_valid("") && !vbu_name_valid(".hidden"));
	CHECK(!vbu_name_valid("a/b") && !vbu_name_valid("a b") && !vbu_name_valid("\xc3\xa9"));
	memset(name, 'n', VBU_NAME_MAX);
	name[VBU_NAME_MAX] = '\0';
	CHECK(vbu_name_valid(name));
	name[VBU_NAME_MAX] = 'n';
	name[VBU_NAME_MAX + 1] = '\0';
	CHECK(!vbu_name_valid(name));
}

static void test_dir_is_empty(void)
{
	char d[PATH_MAX], f[PATH_MAX];

	path_in_tmp(d, sizeof(d), "emptydir");
	CHECK(mkdir(d, 0700) == 0);
	CHECK_EQ_INT(vbu_dir_is_empty(d), 1);
	path_in_tmp(f, sizeof(f), "emptydir/f");
	CHECK_EQ_INT(vbu_write_file_atomic(f, "x", 1, 0600), 0);
	CHECK_EQ_INT(vbu_dir_is_empty(d), 0);
	CHECK_EQ_INT(vbu_dir_is_empty(f), -ENOTDIR);
	path_in_tmp(f, sizeof(f), "no-such-dir");
	CHECK_EQ_INT(vbu_dir_is_empty(f), -ENOENT);
}

static void test_json_getters(void)
{
	json_object *o = json_tokener_parse(
	    "{\"s\": \"abc\", \"nul\": \"a\\u0000b\", \"i\": -5, \"big\": 9223372036854775807,"
	    " \"o\": {}, \"a\": [1], \"f\": 1.5}");
	char buf[4] = "zz";
	int64_t x = 42;
	uint64_t u = 42;

	CHECK(o != NULL);
	CHECK_EQ_STR(vbu_json_str(o, "s"), "abc");
	CHECK(vbu_json_str(o, "i") == NULL && vbu_json_str(o, "none") == NULL);
	CHECK_EQ_INT(vbu_json_copy_str(o, "s", buf, sizeof(buf)), 0);
	CHECK_EQ_STR(buf, "abc");
	CHECK_EQ_INT(vbu_json_copy_str(o, "s", buf, 3), -EPROTO); /* no room for the NUL */
	CHECK_EQ_INT(vbu_json_copy_str(o, "nul", buf, sizeof(buf)), -EPROTO);
	CHECK_EQ_INT(vbu_json_copy_str(o, "i", buf, sizeof(buf)), -EPROTO);
	CHECK_EQ_STR(buf, "abc"); /* written only on success */
	CHECK_EQ_INT(vbu_json_int(o, "i", -5, 5, &x), 0);
	CHECK_EQ_INT(x, -5);
	CHECK_EQ_INT(vbu_json_int(o, "i", -4, 5, &x), -EPROTO);
	CHECK_EQ_INT(vbu_json_int(o, "f", INT64_MIN, INT64_MAX, &x), -EPROTO);
	CHECK_EQ_INT(vbu_json_int(o, "s", INT64_MIN, INT64_MAX, &x), -EPROTO);
	CHECK_EQ_INT(x, -5);
	CHECK_EQ_INT(vbu_json_u64(o, "big", &u), 0);
	CHECK(u == INT64_MAX);
	CHECK_EQ_INT(vbu_json_u64(o, "i", &u), -EPROTO);
	CHECK(vbu_json_obj(o, "o", json_type_object) != NULL);
	CHECK(vbu_json_obj(o, "a", json_type_object) == NULL);
	CHECK(vbu_json_obj(o, "a", json_type_array) != NULL);
	CHECK_EQ_INT(vbu_json_add(o, "new", json_object_new_int(3)), 0);
	CHECK_EQ_INT(vbu_json_int(o, "new", 3, 3, &x), 0);
	CHECK_EQ_INT(vbu_json_add(o, "null", NULL), -ENOMEM);
	{
		const uint8_t bytes[5] = {0, 1, 2, 0xfe, 0xff};
		uint8_t back[5] = {0}, small[4];

		CHECK_EQ_INT(vbu_json_add_b64(o, "b", bytes, sizeof(bytes)), 0);
		CHECK_EQ_STR(vbu_json_str(o, "b"), "AAEC/v8=");
		CHECK_EQ_INT(vbu_json_b64(o, "b", back, sizeof(back)), 0);
		CHECK(memcmp(back, bytes, sizeof(bytes)) == 0);
		CHECK_EQ_INT(vbu_json_b64(o, "b", small, sizeof(small)), -EPROTO);
		CHECK_EQ_INT(vbu_json_b64(o, "s", back, 2), -EPROTO); /* "abc" is no base64 */
		CHECK_EQ_INT(vbu_json_b64(o, "i", back, sizeof(back)), -EPROTO);
	}
	json_object_put(o);
}

int main(void)
{
	const char *base = getenv("TMPDIR");
	int n = snprintf(tmpdir, sizeof(tmpdir), "%s/vmbak-util-test-XXXXXX",
			 base && *base ? base : "/tmp");

	if (n < 0 || (size_t)n >= sizeof(tmpdir) || !mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_hex);
	RUN(test_base64_vectors);
	RUN(test_base64_roundtrip);
	RUN(test_base64_malformed);
	RUN(test_time);
	RUN(test_parse_size);
	RUN(test_messages);
	RUN(test_write_atomic);
	RUN(test_read_file);
	RUN(test_io);
	RUN(test_fail_message);
	RUN(test_uuid_and_names);
	RUN(test_dir_is_empty);
	RUN(test_json_getters);
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return unit_finish();
}
