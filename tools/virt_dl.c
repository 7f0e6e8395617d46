/* virt_dl.c: the libvirt loader (virt_dl.h). */
#include "virt_dl.h"

VBU_DLSYM_PROTOTYPE(virConnectClose) = NULL;
VBU_DLSYM_PROTOTYPE(virConnectOpen) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainAbortJob) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainBackupBegin) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainBackupGetXMLDesc) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainCheckpointDelete) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainCheckpointFree) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainCheckpointGetName) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainCheckpointLookupByName) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainDefineXML) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainFSFreeze) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainFSThaw) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainFree) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainGetBlockInfo) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainGetXMLDesc) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainIsActive) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainListAllCheckpoints) = NULL;
VBU_DLSYM_PROTOTYPE(virDomainLookupByName) = NULL;
VBU_DLSYM_PROTOTYPE(virGetLastError) = NULL;
VBU_DLSYM_PROTOTYPE(virGetLastErrorMessage) = NULL;
VBU_DLSYM_PROTOTYPE(virResetLastError) = NULL;
VBU_DLSYM_PROTOTYPE(virSecretDefineXML) = NULL;
VBU_DLSYM_PROTOTYPE(virSecretFree) = NULL;
VBU_DLSYM_PROTOTYPE(virSecretSetValue) = NULL;
VBU_DLSYM_PROTOTYPE(virSecretUndefine) = NULL;
VBU_DLSYM_PROTOTYPE(virSetErrorFunc) = NULL;

int dlopen_libvirt(void)
{
	static void *virt_dl;

	return vbu_dlopen_many(
	    &virt_dl, "libvirt.so.0", "libvirt domains", VBU_DLSYM_ARG(virConnectClose),
	    VBU_DLSYM_ARG(virConnectOpen), VBU_DLSYM_ARG(virDomainAbortJob),
	    VBU_DLSYM_ARG(virDomainBackupBegin), VBU_DLSYM_ARG(virDomainBackupGetXMLDesc),
	    VBU_DLSYM_ARG(virDomainCheckpointDelete), VBU_DLSYM_ARG(virDomainCheckpointFree),
	    VBU_DLSYM_ARG(virDomainCheckpointGetName),
	    VBU_DLSYM_ARG(virDomainCheckpointLookupByName), VBU_DLSYM_ARG(virDomainDefineXML),
	    VBU_DLSYM_ARG(virDomainFSFreeze), VBU_DLSYM_ARG(virDomainFSThaw),
	    VBU_DLSYM_ARG(virDomainFree), VBU_DLSYM_ARG(virDomainGetBlockInfo),
	    VBU_DLSYM_ARG(virDomainGetXMLDesc), VBU_DLSYM_ARG(virDomainIsActive),
	    VBU_DLSYM_ARG(virDomainListAllCheckpoints), VBU_DLSYM_ARG(virDomainLookupByName),
	    VBU_DLSYM_ARG(virGetLastError), VBU_DLSYM_ARG(virGetLastErrorMessage),
	    VBU_DLSYM_ARG(virResetLastError), VBU_DLSYM_ARG(virSecretDefineXML),
	    VBU_DLSYM_ARG(virSecretFree), VBU_DLSYM_ARG(virSecretSetValue),
	    VBU_DLSYM_ARG(virSecretUndefine), VBU_DLSYM_ARG(virSetErrorFunc), NULL);
}
