/* rados_dl.h: librados, loaded when a vault with chunks in RADOS first connects (dl.h).
 * Store-internal: only chunkstore_rados.c calls these. */
#ifndef VMBAK_RADOS_DL_H
#define VMBAK_RADOS_DL_H

#include <rados/librados.h>

#include "dl.h"

extern VBU_DLSYM_PROTOTYPE(rados_aio_create_completion2);
extern VBU_DLSYM_PROTOTYPE(rados_aio_get_return_value);
extern VBU_DLSYM_PROTOTYPE(rados_aio_is_complete);
extern VBU_DLSYM_PROTOTYPE(rados_aio_read);
extern VBU_DLSYM_PROTOTYPE(rados_aio_release);
extern VBU_DLSYM_PROTOTYPE(rados_aio_stat);
extern VBU_DLSYM_PROTOTYPE(rados_aio_wait_for_complete);
extern VBU_DLSYM_PROTOTYPE(rados_aio_write_op_operate);
extern VBU_DLSYM_PROTOTYPE(rados_conf_get);
extern VBU_DLSYM_PROTOTYPE(rados_conf_parse_env);
extern VBU_DLSYM_PROTOTYPE(rados_conf_read_file);
extern VBU_DLSYM_PROTOTYPE(rados_conf_set);
extern VBU_DLSYM_PROTOTYPE(rados_connect);
extern VBU_DLSYM_PROTOTYPE(rados_create);
extern VBU_DLSYM_PROTOTYPE(rados_create_read_op);
extern VBU_DLSYM_PROTOTYPE(rados_create_write_op);
extern VBU_DLSYM_PROTOTYPE(rados_ioctx_create);
extern VBU_DLSYM_PROTOTYPE(rados_ioctx_destroy);
extern VBU_DLSYM_PROTOTYPE(rados_ioctx_set_namespace);
extern VBU_DLSYM_PROTOTYPE(rados_nobjects_list_close);
extern VBU_DLSYM_PROTOTYPE(rados_nobjects_list_next);
extern VBU_DLSYM_PROTOTYPE(rados_nobjects_list_open);
extern VBU_DLSYM_PROTOTYPE(rados_read_op_operate);
extern VBU_DLSYM_PROTOTYPE(rados_read_op_read);
extern VBU_DLSYM_PROTOTYPE(rados_read_op_stat);
extern VBU_DLSYM_PROTOTYPE(rados_release_read_op);
extern VBU_DLSYM_PROTOTYPE(rados_release_write_op);
extern VBU_DLSYM_PROTOTYPE(rados_remove);
extern VBU_DLSYM_PROTOTYPE(rados_shutdown);
extern VBU_DLSYM_PROTOTYPE(rados_write_op_create);
extern VBU_DLSYM_PROTOTYPE(rados_write_op_write_full);

/* Loads librados.so.2 and the symbols above (vbu_dlopen_many: 0, or -ELIBACC with vbu_errmsg()
 * "cannot load librados.so.2 (needed for chunks in RADOS): ..."). Thread-safe. */
int vbs_dlopen_rados(void);

#endif
