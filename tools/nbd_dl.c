/* nbd_dl.c: the libnbd loader (nbd_dl.h). */
#include "nbd_dl.h"

VBU_DLSYM_PROTOTYPE(nbd_add_meta_context) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_aio_connect_unix) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_aio_connect_uri) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_aio_in_flight) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_aio_is_connecting) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_aio_is_ready) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_aio_pread) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_block_status) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_can_meta_context) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_close) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_create) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_get_block_size) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_get_errno) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_get_error) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_get_size) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_poll) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_set_export_name) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_set_uri_allow_local_file) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_set_uri_allow_transports) = NULL;
VBU_DLSYM_PROTOTYPE(nbd_shutdown) = NULL;

int dlopen_libnbd(void)
{
	static void *nbd_dl;

	return vbu_dlopen_many(
	    &nbd_dl, "libnbd.so.0", "NBD sources", VBU_DLSYM_ARG(nbd_add_meta_context),
	    VBU_DLSYM_ARG(nbd_aio_connect_unix), VBU_DLSYM_ARG(nbd_aio_connect_uri),
	    VBU_DLSYM_ARG(nbd_aio_in_flight), VBU_DLSYM_ARG(nbd_aio_is_connecting),
	    VBU_DLSYM_ARG(nbd_aio_is_ready), VBU_DLSYM_ARG(nbd_aio_pread),
	    VBU_DLSYM_ARG(nbd_block_status), VBU_DLSYM_ARG(nbd_can_meta_context),
	    VBU_DLSYM_ARG(nbd_close), VBU_DLSYM_ARG(nbd_create), VBU_DLSYM_ARG(nbd_get_block_size),
	    VBU_DLSYM_ARG(nbd_get_errno), VBU_DLSYM_ARG(nbd_get_error), VBU_DLSYM_ARG(nbd_get_size),
	    VBU_DLSYM_ARG(nbd_poll), VBU_DLSYM_ARG(nbd_set_export_name),
	    VBU_DLSYM_ARG(nbd_set_uri_allow_local_file),
	    VBU_DLSYM_ARG(nbd_set_uri_allow_transports), VBU_DLSYM_ARG(nbd_shutdown), NULL);
}
