/* file.c: reading and writing whole files, safely (see file.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "file.h"

/* Largest piece handed to one read(), write() or pread() call. */
#define IO_PIECE ((size_t)1 << 30)

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
	/* O_EXCL: never follow or reuse what someone else put there. A file of this name is
	 * what an earlier process of the same pid left when it was killed mid-write: removed
	 * (unlink follows no link) and made anew, once. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
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

int vbu_dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int empty = 1;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}
