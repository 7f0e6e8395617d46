/* rados_dl.c: the librados loader (rados_dl.h). */
#include "rados_dl.h"

VBU_DLSYM_PROTOTYPE(rados_aio_create_completion2) = NULL;
VBU_DLSYM_PROTOTYPE(rados_aio_get_return_value) = NULL;
VBU_DLSYM_PROTOTYPE(rados_aio_is_complete) = NULL;
VBU_DLSYM_PROTOTYPE(rados_aio_read) = NULL;
VBU_DLSYM_PROTOTYPE(rados_aio_release) = NULL;
VBU_DLSYM_PROTOTYPE(rados_aio_stat) = NULL;
VBU_DLSYM_PROTOTYPE(rados_aio_wait_for_complete) = NULL;
VBU_DLSYM_PROTOTYPE(rados_aio_write_op_operate) = NULL;
VBU_DLSYM_PROTOTYPE(rados_conf_get) = NULL;
VBU_DLSYM_PROTOTYPE(rados_conf_parse_env) = NULL;
VBU_DLSYM_PROTOTYPE(rados_conf_read_file) = NULL;
VBU_DLSYM_PROTOTYPE(rados_conf_set) = NULL;
VBU_DLSYM_PROTOTYPE(rados_connect) = NULL;
VBU_DLSYM_PROTOTYPE(rados_create) = NULL;
VBU_DLSYM_PROTOTYPE(rados_create_read_op) = NULL;
VBU_DLSYM_PROTOTYPE(rados_create_write_op) = NULL;
VBU_DLSYM_PROTOTYPE(rados_ioctx_create) = NULL;
VBU_DLSYM_PROTOTYPE(rados_ioctx_destroy) = NULL;
VBU_DLSYM_PROTOTYPE(rados_ioctx_set_namespace) = NULL;
VBU_DLSYM_PROTOTYPE(rados_nobjects_list_close) = NULL;
VBU_DLSYM_PROTOTYPE(rados_nobjects_list_next) = NULL;
VBU_DLSYM_PROTOTYPE(rados_nobjects_list_open) = NULL;
VBU_DLSYM_PROTOTYPE(rados_read_op_operate) = NULL;
VBU_DLSYM_PROTOTYPE(rados_read_op_read) = NULL;
VBU_DLSYM_PROTOTYPE(rados_read_op_stat) = NULL;
VBU_DLSYM_PROTOTYPE(rados_release_read_op) = NULL;
VBU_DLSYM_PROTOTYPE(rados_release_write_op) = NULL;
VBU_DLSYM_PROTOTYPE(rados_remove) = NULL;
VBU_DLSYM_PROTOTYPE(rados_shutdown) = NULL;
VBU_DLSYM_PROTOTYPE(rados_write_op_create) = NULL;
VBU_DLSYM_PROTOTYPE(rados_write_op_write_full) = NULL;

int vbs_dlopen_rados(void)
{
	static void *rados_dl;

	return vbu_dlopen_many(
	    &rados_dl, "librados.so.2", "chunks in RADOS",
	    VBU_DLSYM_ARG(rados_aio_create_completion2), VBU_DLSYM_ARG(rados_aio_get_return_value),
	    VBU_DLSYM_ARG(rados_aio_is_complete), VBU_DLSYM_ARG(rados_aio_read),
	    VBU_DLSYM_ARG(rados_aio_release), VBU_DLSYM_ARG(rados_aio_stat),
	    VBU_DLSYM_ARG(rados_aio_wait_for_complete), VBU_DLSYM_ARG(rados_aio_write_op_operate),
	    VBU_DLSYM_ARG(rados_conf_get), VBU_DLSYM_ARG(rados_conf_parse_env),
	    VBU_DLSYM_ARG(rados_conf_read_file), VBU_DLSYM_ARG(rados_conf_set),
	    VBU_DLSYM_ARG(rados_connect), VBU_DLSYM_ARG(rados_create),
	    VBU_DLSYM_ARG(rados_create_read_op), VBU_DLSYM_ARG(rados_create_write_op),
	    VBU_DLSYM_ARG(rados_ioctx_create), VBU_DLSYM_ARG(rados_ioctx_destroy),
	    VBU_DLSYM_ARG(rados_ioctx_set_namespace), VBU_DLSYM_ARG(rados_nobjects_list_close),
	    VBU_DLSYM_ARG(rados_nobjects_list_next), VBU_DLSYM_ARG(rados_nobjects_list_open),
	    VBU_DLSYM_ARG(rados_read_op_operate), VBU_DLSYM_ARG(rados_read_op_read),
	    VBU_DLSYM_ARG(rados_read_op_stat), VBU_DLSYM_ARG(rados_release_read_op),
	    VBU_DLSYM_ARG(rados_release_write_op), VBU_DLSYM_ARG(rados_remove),
	    VBU_DLSYM_ARG(rados_shutdown), VBU_DLSYM_ARG(rados_write_op_create),
	    VBU_DLSYM_ARG(rados_write_op_write_full), NULL);
}
