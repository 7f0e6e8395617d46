/* cryptsetup_dl.h: libcryptsetup, loaded when vmbak files first opens a LUKS disk (dl.h). */
#ifndef VMBAK_CRYPTSETUP_DL_H
#define VMBAK_CRYPTSETUP_DL_H

#include <libcryptsetup.h>

#include "dl.h"

extern VBU_DLSYM_PROTOTYPE(crypt_free);
extern VBU_DLSYM_PROTOTYPE(crypt_get_cipher);
extern VBU_DLSYM_PROTOTYPE(crypt_get_cipher_mode);
extern VBU_DLSYM_PROTOTYPE(crypt_get_data_offset);
extern VBU_DLSYM_PROTOTYPE(crypt_get_integrity_info);
extern VBU_DLSYM_PROTOTYPE(crypt_get_iv_offset);
extern VBU_DLSYM_PROTOTYPE(crypt_get_sector_size);
extern VBU_DLSYM_PROTOTYPE(crypt_get_type);
extern VBU_DLSYM_PROTOTYPE(crypt_get_volume_key_size);
extern VBU_DLSYM_PROTOTYPE(crypt_init);
extern VBU_DLSYM_PROTOTYPE(crypt_load);
extern VBU_DLSYM_PROTOTYPE(crypt_persistent_flags_get);
extern VBU_DLSYM_PROTOTYPE(crypt_reencrypt_status);
extern VBU_DLSYM_PROTOTYPE(crypt_set_log_callback);
extern VBU_DLSYM_PROTOTYPE(crypt_volume_key_get);

/* Loads libcryptsetup.so.12 and the symbols above (vbu_dlopen_many: 0, or -ELIBACC with
 * vbu_errmsg() "cannot load libcryptsetup.so.12 (needed for LUKS disks in vmbak files): ...").
 * Thread-safe. */
int dlopen_cryptsetup(void);

#endif
