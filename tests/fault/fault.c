/* fault.c: fault injection for the test build (make fault: build-fault/vmbak, build-fault/vmbakfs).
 *
 * Linked in with -Wl,--wrap=SYMBOL for each function below, so that every call our own objects
 * (keyvault/, store/, tools/, fs/) make to SYMBOL goes through __wrap_SYMBOL here; calls made
 * inside the libraries (LMDB's own writes, OpenSSL's and json-c's allocations) are not counted.
 * The calls fall into five kinds; each kind has one counter, counting from the start of the
 * process:
 *
 *   alloc    malloc, calloc, realloc, strdup, strndup    fail: NULL, errno ENOMEM
 *   write    write to a descriptor above 2 (not stdin,   fail: -1, errno ENOSPC (a full disk)
 *            stdout or stderr: a message that cannot
 *            be written has nowhere to go)
 *   fsync    fsync                                       fail: -1, errno EIO (a lost write-back)
 *   mdb_put  mdb_put, mdb_del                            fail: ENOMEM (LMDB's answer when it
 *                                                        cannot get a dirty page)
 *   commit   mdb_txn_commit                              fail: EIO (LMDB's answer to a short
 *                                                        write); the transaction is aborted,
 *                                                        as a failed commit frees it
 *
 * Environment, read once before main:
 *   VMBAK_FAULT=KIND:N[:CODE]   the Nth call (from 1) of KIND fails, with CODE (a decimal errno,
 *                               or an LMDB code such as -30792 for MDB_MAP_FULL) instead of the
 *                               errno above; every other call goes through.
 *   VMBAK_FAULT_COUNT=FILE      at exit, FILE gets one "KIND COUNT" line per kind: how many
 *                               calls of that kind the process made (the range for N).
 *
 * The wrappers never allocate and use only atomics, so they are safe from any thread and from
 * inside the allocator's callers. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

enum kind { K_ALLOC, K_WRITE, K_FSYNC, K_MDB_PUT, K_COMMIT, K_N };

static const char *const kind_name[K_N] = {"alloc", "write", "fsync", "mdb_put", "commit"};
static const int kind_code[K_N] = {ENOMEM, ENOSPC, EIO, ENOMEM, EIO};

static atomic_ulong counter[K_N];
static int fail_kind = -1;
static unsigned long fail_n;
static int fail_code;
static const char *count_file;

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
ssize_t __real_write(int fd, const void *buf, size_t len);
int __real_fsync(int fd);
int __real_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags);
int __real_mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data);
int __real_mdb_txn_commit(MDB_txn *txn);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t len);
int __wrap_fsync(int fd);
int __wrap_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags);
int __wrap_mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data);
int __wrap_mdb_txn_commit(MDB_txn *txn);

/* Counts a call of kind k; true if this call is the one to fail. */
static int hit(enum kind k)
{
	unsigned long n = atomic_fetch_add_explicit(&counter[k], 1, memory_order_relaxed) + 1;

	return (int)k == fail_kind && n == fail_n;
}

static void write_counts(void)
{
	char buf[256];
	size_t len = 0;
	int fd;

	for (int k = 0; k < K_N; k++) {
		int n = snprintf(buf + len, sizeof(buf) - len, "%s %lu\n", kind_name[k],
				 atomic_load(&counter[k]));

		if (n < 0 || (size_t)n >= sizeof(buf) - len)
			return;
		len += (size_t)n;
	}
	fd = open(count_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	(void)!__real_write(fd, buf, len);
	close(fd);
}

__attribute__((constructor)) static void fault_init(void)
{
	const char *spec = getenv("VMBAK_FAULT");
	const char *colon;
	char *end;

	count_file = getenv("VMBAK_FAULT_COUNT");
	if (count_file && *count_file)
		atexit(write_counts);
	if (!spec || !*spec)
		return;
	colon = strchr(spec, ':');
	for (int k = 0; colon && k < K_N; k++) {
		if (strlen(kind_name[k]) == (size_t)(colon - spec) &&
		    memcmp(kind_name[k], spec, (size_t)(colon - spec)) == 0)
			fail_kind = k;
	}
	if (fail_kind < 0)
		goto bad;
	errno = 0;
	fail_n = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || fail_n == 0)
		goto bad;
	fail_code = kind_code[fail_kind];
	if (*end == ':') {
		long code = strtol(end + 1, &end, 10);

		if (code == 0 || code < -100000 || code > 100000)
			goto bad;
		fail_code = (int)code;
	}
	if (*end)
		goto bad;
	return;
bad:
	fprintf(stderr,
		"fault: bad VMBAK_FAULT '%s' (KIND:N[:CODE], KIND one of alloc, write, "
		"fsync, mdb_put, commit)\n",
		spec);
	_exit(125);
}

void *__wrap_malloc(size_t size)
{
	if (hit(K_ALLOC)) {
		errno = fail_code;
		return NULL;
	}
	return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	if (hit(K_ALLOC)) {
		errno = fail_code;
		return NULL;
	}
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	if (hit(K_ALLOC)) {
		errno = fail_code;
		return NULL;
	}
	return __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
	if (hit(K_ALLOC)) {
		errno = fail_code;
		return NULL;
	}
	return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	if (hit(K_ALLOC)) {
		errno = fail_code;
		return NULL;
	}
	return __real_strndup(s, n);
}

ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	if (fd > STDERR_FILENO && hit(K_WRITE)) {
		errno = fail_code;
		return -1;
	}
	return __real_write(fd, buf, len);
}

int __wrap_fsync(int fd)
{
	if (hit(K_FSYNC)) {
		errno = fail_code;
		return -1;
	}
	return __real_fsync(fd);
}

int __wrap_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags)
{
	if (hit(K_MDB_PUT))
		return fail_code;
	return __real_mdb_put(txn, dbi, key, data, flags);
}

int __wrap_mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
	if (hit(K_MDB_PUT))
		return fail_code;
	return __real_mdb_del(txn, dbi, key, data);
}

int __wrap_mdb_txn_commit(MDB_txn *txn)
{
	if (hit(K_COMMIT)) {
		/* A failed commit frees the transaction: so must a simulated one. */
		mdb_txn_abort(txn);
		return fail_code;
	}
	return __real_mdb_txn_commit(txn);
}
