/* virt_dl.h: libvirt, loaded when ingest --libvirt or restore --define first needs it (dl.h). */
#ifndef VMBAK_VIRT_DL_H
#define VMBAK_VIRT_DL_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dl.h"

extern VBU_DLSYM_PROTOTYPE(virConnectClose);
extern VBU_DLSYM_PROTOTYPE(virConnectOpen);
extern VBU_DLSYM_PROTOTYPE(virDomainAbortJob);
extern VBU_DLSYM_PROTOTYPE(virDomainBackupBegin);
extern VBU_DLSYM_PROTOTYPE(virDomainBackupGetXMLDesc);
extern VBU_DLSYM_PROTOTYPE(virDomainCheckpointDelete);
extern VBU_DLSYM_PROTOTYPE(virDomainCheckpointFree);
extern VBU_DLSYM_PROTOTYPE(virDomainCheckpointGetName);
extern VBU_DLSYM_PROTOTYPE(virDomainCheckpointLookupByName);
extern VBU_DLSYM_PROTOTYPE(virDomainDefineXML);
extern VBU_DLSYM_PROTOTYPE(virDomainFSFreeze);
extern VBU_DLSYM_PROTOTYPE(virDomainFSThaw);
extern VBU_DLSYM_PROTOTYPE(virDomainFree);
extern VBU_DLSYM_PROTOTYPE(virDomainGetBlockInfo);
extern VBU_DLSYM_PROTOTYPE(virDomainGetXMLDesc);
extern VBU_DLSYM_PROTOTYPE(virDomainIsActive);
extern VBU_DLSYM_PROTOTYPE(virDomainListAllCheckpoints);
extern VBU_DLSYM_PROTOTYPE(virDomainLookupByName);
extern VBU_DLSYM_PROTOTYPE(virGetLastError);
extern VBU_DLSYM_PROTOTYPE(virGetLastErrorMessage);
extern VBU_DLSYM_PROTOTYPE(virResetLastError);
extern VBU_DLSYM_PROTOTYPE(virSecretDefineXML);
extern VBU_DLSYM_PROTOTYPE(virSecretFree);
extern VBU_DLSYM_PROTOTYPE(virSecretSetValue);
extern VBU_DLSYM_PROTOTYPE(virSecretUndefine);
extern VBU_DLSYM_PROTOTYPE(virSetErrorFunc);

/* Loads libvirt.so.0 and the symbols above (vbu_dlopen_many: 0, or -ELIBACC with vbu_errmsg()
 * "cannot load libvirt.so.0 (needed for libvirt domains): ..."). Thread-safe. */
int dlopen_libvirt(void);

#endif
