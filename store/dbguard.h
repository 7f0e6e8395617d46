/* dbguard.h: a damaged data.mdb ends the process with one clear line, not a crash.
 *
 * LMDB trusts its file: a page overwritten with garbage can make it follow a page number past
 * the end of the file (SIGBUS), past its map (SIGSEGV inside LMDB) or fail an internal
 * assertion (abort). While a vault's environment is open, the guard turns each of these into
 * the line "PROG: vault 'PATH': the database is damaged (...)" on stderr and _exit() with the
 * guard's exit status (1; `vmbak verify` sets 3). Faults elsewhere (a SIGSEGV outside LMDB's
 * code: a bug) go to the handler that was installed before, or kill the process as usual, so
 * sanitizers and core dumps still see them.
 *
 * vault.c registers every environment it opens and unregisters it on close; nothing else needs
 * to call these. The handlers are installed once per process, at the first registration.
 * Thread-safe.
 */
#ifndef VMBAK_DBGUARD_H
#define VMBAK_DBGUARD_H

#include <lmdb.h>

/* Registers env (of the vault at path) and installs the handlers; sets LMDB's assert hook. */
void vbs_guard_add(MDB_env *env, const char *path);
void vbs_guard_remove(MDB_env *env);
/* vbs_guard_exit_status(), the one call from outside store/, is declared in vault.h. */

#endif
