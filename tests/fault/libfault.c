/* libfault.c: an LD_PRELOAD library that fails the Nth system call wrapper a process calls
 * through the dynamic linker, whoever calls it: our programs, LMDB, json-c, OpenSSL, libfuse
 * (tests/cli/libfaults.sh). Built as $(B)/tests/libfault.so. Unlike tests/fault/fault.c, which
 * wraps only the calls our own objects make, this reaches inside the libraries.
 *
 * Counted calls: open open64 openat openat64 creat read pread pread64 write pwrite pwrite64
 * fsync fdatasync mmap mmap64 msync rename renameat ftruncate ftruncate64 getrandom; reads and
 * writes of descriptors 0, 1 and 2 are not counted (a message that cannot be written has
 * nowhere to go). Calls glibc makes to itself (fopen's open, malloc's mmap) do not go through
 * the dynamic linker and are not seen.
 *
 * Environment, read at the first counted call:
 *   VMBAK_LIBFAULT=N          the Nth counted call (from 1) fails; every other goes through
 *   VMBAK_LIBFAULT_ONLY=a,b   count only these functions (names as above)
 *   VMBAK_LIBFAULT_COUNT=FILE at exit, FILE gets "COUNT" (how many calls were counted) and the
 *                             name of the call that failed, if one did
 * The failure: -1 (MAP_FAILED for mmap) with errno ENOSPC for write, pwrite, ftruncate and
 * creat; EIO for everything else. A process that forks counts on in the child from the
 * parent's count, as both continue one program's sequence of calls.
 *
 * Under AddressSanitizer set ASAN_OPTIONS=verify_asan_link_order=0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_ulong calls;
static atomic_int ready;
static unsigned long fail_at;
static const char *only;
static const char *count_file;
static const char *failed_name;

static void report(void)
{
	FILE *f;

	if (!count_file)
		return;
	f = fopen(count_file, "w");
	if (!f)
		return;
	fprintf(f, "%lu%s%s\n", (unsigned long)atomic_load(&calls), failed_name ? " " : "",
		failed_name ? failed_name : "");
	fclose(f);
}

static void setup(void)
{
	const char *s;
	int expected = 0;

	if (!atomic_compare_exchange_strong(&ready, &expected, 1))
		return;
	s = getenv("VMBAK_LIBFAULT");
	fail_at = s ? strtoul(s, NULL, 10) : 0;
	only = getenv("VMBAK_LIBFAULT_ONLY");
	count_file = getenv("VMBAK_LIBFAULT_COUNT");
	if (count_file)
		atexit(report);
	atomic_store(&ready, 2);
}

/* Whether this call of NAME fails; counts it. */
static int fault(const char *name)
{
	unsigned long n;
	size_t len = strlen(name);
	const char *p;

	if (atomic_load(&ready) != 2)
		setup();
	if (only) {
		for (p = only; (p = strstr(p, name)); p += len)
			if ((p == only || p[-1] == ',') && (p[len] == ',' || p[len] == '\0'))
				break;
		if (!p)
			return 0;
	}
	n = atomic_fetch_add(&calls, 1) + 1;
	if (fail_at && n == fail_at) {
		failed_name = name;
		/* Also at _exit: a daemon that ends with _exit or a crash still says what failed. */
		if (count_file)
			report();
		return 1;
	}
	return 0;
}

/* The next definition of NAME (libc's), with the prototype of the system header. */
#define REAL(name) \
	static __typeof__(&name) real_##name; \
	if (!real_##name) \
		real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

#define FAIL(ret, err) \
	do { \
		errno = (err); \
		return (ret); \
	} while (0)

static int open_mode_needed(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(open);

	if (open_mode_needed(flags)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (fault("open"))
		FAIL(-1, EIO);
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(open64);

	if (open_mode_needed(flags)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (fault("open64"))
		FAIL(-1, EIO);
	return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(openat);

	if (open_mode_needed(flags)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (fault("openat"))
		FAIL(-1, EIO);
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	REAL(openat64);

	if (open_mode_needed(flags)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (fault("openat64"))
		FAIL(-1, EIO);
	return real_openat64(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
	REAL(creat);
	if (fault("creat"))
		FAIL(-1, ENOSPC);
	return real_creat(path, mode);
}

ssize_t read(int fd, void *buf, size_t len)
{
	REAL(read);
	if (fd > 2 && fault("read"))
		FAIL(-1, EIO);
	return real_read(fd, buf, len);
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
	REAL(pread);
	if (fault("pread"))
		FAIL(-1, EIO);
	return real_pread(fd, buf, len, off);
}

ssize_t pread64(int fd, void *buf, size_t len, off_t off)
{
	REAL(pread64);
	if (fault("pread64"))
		FAIL(-1, EIO);
	return real_pread64(fd, buf, len, off);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(write);
	if (fd > 2 && fault("write"))
		FAIL(-1, ENOSPC);
	return real_write(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite);
	if (fault("pwrite"))
		FAIL(-1, ENOSPC);
	return real_pwrite(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite64);
	if (fault("pwrite64"))
		FAIL(-1, ENOSPC);
	return real_pwrite64(fd, buf, len, off);
}

int fsync(int fd)
{
	REAL(fsync);
	if (fault("fsync"))
		FAIL(-1, EIO);
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(fdatasync);
	if (fault("fdatasync"))
		FAIL(-1, EIO);
	return real_fdatasync(fd);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(mmap);
	if (fd >= 0 && fault("mmap"))
		FAIL(MAP_FAILED, EIO);
	return real_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(mmap64);
	if (fd >= 0 && fault("mmap64"))
		FAIL(MAP_FAILED, EIO);
	return real_mmap64(addr, len, prot, flags, fd, off);
}

int msync(void *addr, size_t len, int flags)
{
	REAL(msync);
	if (fault("msync"))
		FAIL(-1, EIO);
	return real_msync(addr, len, flags);
}

int rename(const char *from, const char *to)
{
	REAL(rename);
	if (fault("rename"))
		FAIL(-1, EIO);
	return real_rename(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
	REAL(renameat);
	if (fault("renameat"))
		FAIL(-1, EIO);
	return real_renameat(fromfd, from, tofd, to);
}

int ftruncate(int fd, off_t len)
{
	REAL(ftruncate);
	if (fault("ftruncate"))
		FAIL(-1, ENOSPC);
	return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off_t len)
{
	REAL(ftruncate64);
	if (fault("ftruncate64"))
		FAIL(-1, ENOSPC);
	return real_ftruncate64(fd, len);
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
	REAL(getrandom);
	if (fault("getrandom"))
		FAIL(-1, EIO);
	return real_getrandom(buf, len, flags);
}
