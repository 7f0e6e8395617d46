/* dl.h: libraries only some paths need, loaded with dlopen() the first time one of them runs.
 *
 * A vmbak or vmbakfs process that starts cold spends most of its start-up mapping libraries;
 * librados, libvirt, libxml2, libnbd and libcryptsetup (and what they pull in) are needed only by
 * chunks in RADOS, --libvirt, restore --define, NBD sources and vmbak files. So the programs are
 * not linked with them: each such library has one loader (store/rados_dl.c, tools/NAME_dl.c) that
 * holds its symbols as function pointers named sym_NAME, typed from the library's own header so
 * the compiler checks every call, as systemd does (src/shared/dlfcn-util.h):
 *
 *     extern VBU_DLSYM_PROTOTYPE(rados_create);      in the loader's header
 *     VBU_DLSYM_PROTOTYPE(rados_create) = NULL;      in its .c
 *     vbu_dlopen_many(&handle, "librados.so.2", "chunks in RADOS",
 *                     VBU_DLSYM_ARG(rados_create), ..., NULL);
 *
 * A path calls its loader before its first sym_ call; calling a sym_ pointer before the loader
 * returned 0 is a programmer error (a NULL call).
 */
#ifndef VMBAK_DL_H
#define VMBAK_DL_H

#include <stddef.h>

#define VBU_DLSYM_PROTOTYPE(sym) __typeof__(&sym) sym_##sym
#define VBU_DLSYM_ARG(sym) (void **)&sym_##sym, #sym

/* Opens SONAME (RTLD_NOW | RTLD_NODELETE, never closed: some of these libraries start threads)
 * once per process and resolves each (void **slot, const char *name) pair that follows, up to
 * a NULL. 0 when loaded, now or by an earlier call (then nothing is done again); -ELIBACC when
 * the library cannot be opened or lacks one of the symbols, with the thread's message
 * (vbu_errmsg) "cannot load SONAME (needed for WHAT): REASON" and every slot left NULL; another
 * call tries again. *handle is the loader's own static, NULL until the first success.
 * Thread-safe: concurrent calls for one library load it once. */
int vbu_dlopen_many(void **handle, const char *soname, const char *what, ...)
    __attribute__((sentinel));

#endif
