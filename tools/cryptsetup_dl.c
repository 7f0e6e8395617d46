/* cryptsetup_dl.c: the libcryptsetup loader (cryptsetup_dl.h). */
#include "cryptsetup_dl.h"

VBU_DLSYM_PROTOTYPE(crypt_free) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_cipher) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_cipher_mode) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_data_offset) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_integrity_info) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_iv_offset) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_sector_size) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_type) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_get_volume_key_size) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_init) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_load) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_persistent_flags_get) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_reencrypt_status) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_set_log_callback) = NULL;
VBU_DLSYM_PROTOTYPE(crypt_volume_key_get) = NULL;

int dlopen_cryptsetup(void)
{
	static void *cryptsetup_dl;

	return vbu_dlopen_many(
	    &cryptsetup_dl, "libcryptsetup.so.12", "LUKS disks in vmbak files",
	    VBU_DLSYM_ARG(crypt_free), VBU_DLSYM_ARG(crypt_get_cipher),
	    VBU_DLSYM_ARG(crypt_get_cipher_mode), VBU_DLSYM_ARG(crypt_get_data_offset),
	    VBU_DLSYM_ARG(crypt_get_integrity_info), VBU_DLSYM_ARG(crypt_get_iv_offset),
	    VBU_DLSYM_ARG(crypt_get_sector_size), VBU_DLSYM_ARG(crypt_get_type),
	    VBU_DLSYM_ARG(crypt_get_volume_key_size), VBU_DLSYM_ARG(crypt_init),
	    VBU_DLSYM_ARG(crypt_load), VBU_DLSYM_ARG(crypt_persistent_flags_get),
	    VBU_DLSYM_ARG(crypt_reencrypt_status), VBU_DLSYM_ARG(crypt_set_log_callback),
	    VBU_DLSYM_ARG(crypt_volume_key_get), NULL);
}
