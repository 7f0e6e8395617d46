/* dbguard.c: clean exits on a damaged data.mdb (see dbguard.h). */
#include <link.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "dbguard.h"
#include "internal.h"
#include "util.h"
#include "vault.h"

#define SLOTS 8

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static MDB_env *volatile envs[SLOTS];
/* The line for the most recently registered environment, ready for write(2). */
static char msg[2][700];
static volatile size_t msg_len[2];
static volatile int msg_cur;
static volatile int exit_status = 1;
static int installed;
static struct sigaction old_segv, old_bus;
/* Set while this thread runs inside vbs_guarded(): damage jumps back there. */
static __thread sigjmp_buf *volatile guard_jb;
/* LMDB's code: [text_lo, text_hi). */
static uintptr_t text_lo, text_hi;

static int find_lmdb(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t probe = (uintptr_t)arg;
	int named = strstr(info->dlpi_name, "liblmdb") != NULL;

	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		if (named || (probe >= lo && probe < hi)) {
			text_lo = lo;
			text_hi = hi;
			return 1;
		}
	}
	return 0;
}

static int registered(void)
{
	for (int i = 0; i < SLOTS; i++)
		if (envs[i])
			return 1;
	return 0;
}

static void die_damaged(void)
{
	int cur = msg_cur;

	if (guard_jb)
		siglongjmp(*guard_jb, 1);

	(void)!write(STDERR_FILENO, msg[cur], msg_len[cur]);
	_exit(exit_status);
}

static void chain(struct sigaction *old, int sig, siginfo_t *si, void *uc)
{
	if (old->sa_flags & SA_SIGINFO) {
		if (old->sa_sigaction) {
			old->sa_sigaction(sig, si, uc);
			return;
		}
	} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
		return;
	}
	/* Default action: returning re-runs the faulting instruction, which now kills. A signal
	 * sent by a process (kill -SEGV: si_code <= 0) has no instruction to re-run: raise it
	 * again, or it would be ignored. */
	signal(sig, SIG_DFL);
	if (si && si->si_code <= 0)
		raise(sig);
}

static int in_lmdb(uintptr_t pc)
{
	return pc && pc >= text_lo && pc < text_hi;
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	uintptr_t ip = 0, ret = 0;

#if defined(__x86_64__)
	ip = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
	/* A leaf function of libc that LMDB called (memcpy from a page a damaged pointer names)
	 * has pushed nothing: its return address is at the top of the stack. */
	ret = *(const uintptr_t *)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	ip = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.pc;
	ret = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.regs[30]; /* the link register */
#endif
	if (registered()) {
		/* SIGBUS: a read of the map past the end of data.mdb, the only file we map. */
		if (sig == SIGBUS)
			die_damaged();
		if (in_lmdb(ip) || in_lmdb(ret))
			die_damaged();
	}
	chain(sig == SIGBUS ? &old_bus : &old_segv, sig, si, uc);
}

static void on_assert(MDB_env *env, const char *what)
{
	die_damaged();
}

void vbs_guard_add(MDB_env *env, const char *path)
{
	int next, n;

	pthread_mutex_lock(&lock);
	if (!installed) {
		struct sigaction sa;

		dl_iterate_phdr(find_lmdb, (void *)(uintptr_t)&mdb_txn_begin);
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_fault;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, &old_segv);
		sigaction(SIGBUS, &sa, &old_bus);
		installed = 1;
	}
	for (int i = 0; i < SLOTS; i++)
		if (!envs[i]) {
			envs[i] = env;
			break;
		}
	/* Written into the buffer not in use, then switched to. */
	next = !msg_cur;
	n = snprintf(msg[next], sizeof(msg[next]),
		     "%s: vault '%s': the database is damaged (an invalid page in data.mdb)\n",
		     vbu_progname() ? vbu_progname() : "vmbak", path);
	if (n < 0 || (size_t)n >= sizeof(msg[next])) {
		n = (int)sizeof(msg[next]) - 1;
		msg[next][n - 1] = '\n';
	}
	msg_len[next] = (size_t)n;
	msg_cur = next;
	pthread_mutex_unlock(&lock);
	mdb_env_set_assert(env, on_assert);
}

void vbs_guard_remove(MDB_env *env)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < SLOTS; i++)
		if (envs[i] == env)
			envs[i] = NULL;
	pthread_mutex_unlock(&lock);
}

void vbs_guard_exit_status(int status)
{
	exit_status = status;
}

int vbs_guarded(int (*fn)(void *arg), void *arg)
{
	sigjmp_buf jb, *volatile outer = guard_jb;
	int r;

	if (sigsetjmp(jb, 1) == 0) {
		guard_jb = &jb;
		r = fn(arg);
		guard_jb = outer;
		return r;
	}
	/* Back from a fault on a damaged page (or an LMDB assertion): what fn had open in LMDB
	 * is given up (its read transactions end; the cursors and memory it held are lost). */
	guard_jb = outer;
	vbs_read_abandon();
	return vbs_fail(-EBADMSG, "the database is damaged (an invalid page in data.mdb)");
}
