/* nbd_dl.h: libnbd, loaded when ingest first opens an NBD source (nbd://, --qemu, --libvirt,
 * image formats served by qemu-nbd) (dl.h). */
#ifndef VMBAK_NBD_DL_H
#define VMBAK_NBD_DL_H

#include <libnbd.h>

#include "dl.h"

extern VBU_DLSYM_PROTOTYPE(nbd_add_meta_context);
extern VBU_DLSYM_PROTOTYPE(nbd_aio_connect_unix);
extern VBU_DLSYM_PROTOTYPE(nbd_aio_connect_uri);
extern VBU_DLSYM_PROTOTYPE(nbd_aio_in_flight);
extern VBU_DLSYM_PROTOTYPE(nbd_aio_is_connecting);
extern VBU_DLSYM_PROTOTYPE(nbd_aio_is_ready);
extern VBU_DLSYM_PROTOTYPE(nbd_aio_pread);
extern VBU_DLSYM_PROTOTYPE(nbd_block_status);
extern VBU_DLSYM_PROTOTYPE(nbd_can_meta_context);
extern VBU_DLSYM_PROTOTYPE(nbd_close);
extern VBU_DLSYM_PROTOTYPE(nbd_create);
extern VBU_DLSYM_PROTOTYPE(nbd_get_block_size);
extern VBU_DLSYM_PROTOTYPE(nbd_get_errno);
extern VBU_DLSYM_PROTOTYPE(nbd_get_error);
extern VBU_DLSYM_PROTOTYPE(nbd_get_size);
extern VBU_DLSYM_PROTOTYPE(nbd_poll);
extern VBU_DLSYM_PROTOTYPE(nbd_set_export_name);
extern VBU_DLSYM_PROTOTYPE(nbd_set_uri_allow_local_file);
extern VBU_DLSYM_PROTOTYPE(nbd_set_uri_allow_transports);
extern VBU_DLSYM_PROTOTYPE(nbd_shutdown);

/* Loads libnbd.so.0 and the symbols above (vbu_dlopen_many: 0, or -ELIBACC with vbu_errmsg()
 * "cannot load libnbd.so.0 (needed for NBD sources): ..."). Thread-safe. */
int dlopen_libnbd(void);

#endif
