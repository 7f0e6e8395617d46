/* xml_dl.c: the libxml2 loader (xml_dl.h). */
#include "xml_dl.h"

VBU_DLSYM_PROTOTYPE(xmlDocDumpFormatMemory) = NULL;
VBU_DLSYM_PROTOTYPE(xmlDocGetRootElement) = NULL;
VBU_DLSYM_PROTOTYPE(xmlDocSetRootElement) = NULL;
VBU_DLSYM_PROTOTYPE(xmlFreeDoc) = NULL;
VBU_DLSYM_PROTOTYPE(xmlFreeNode) = NULL;
VBU_DLSYM_PROTOTYPE(xmlGetProp) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNewChild) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNewDoc) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNewNode) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNewProp) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNewTextChild) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNodeAddContent) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNodeGetContent) = NULL;
VBU_DLSYM_PROTOTYPE(xmlNodeSetContent) = NULL;
VBU_DLSYM_PROTOTYPE(xmlReadMemory) = NULL;
VBU_DLSYM_PROTOTYPE(xmlSetProp) = NULL;
VBU_DLSYM_PROTOTYPE(xmlStrEqual) = NULL;
VBU_DLSYM_PROTOTYPE(xmlUnlinkNode) = NULL;
VBU_DLSYM_PROTOTYPE(xmlUnsetProp) = NULL;
VBU_DLSYM_PROTOTYPE(xmlFree) = NULL;

int dlopen_libxml2(void)
{
	static void *xml_dl;

	return vbu_dlopen_many(
	    &xml_dl, "libxml2.so.2", "libvirt domain XML", VBU_DLSYM_ARG(xmlDocDumpFormatMemory),
	    VBU_DLSYM_ARG(xmlDocGetRootElement), VBU_DLSYM_ARG(xmlDocSetRootElement),
	    VBU_DLSYM_ARG(xmlFreeDoc), VBU_DLSYM_ARG(xmlFreeNode), VBU_DLSYM_ARG(xmlGetProp),
	    VBU_DLSYM_ARG(xmlNewChild), VBU_DLSYM_ARG(xmlNewDoc), VBU_DLSYM_ARG(xmlNewNode),
	    VBU_DLSYM_ARG(xmlNewProp), VBU_DLSYM_ARG(xmlNewTextChild),
	    VBU_DLSYM_ARG(xmlNodeAddContent), VBU_DLSYM_ARG(xmlNodeGetContent),
	    VBU_DLSYM_ARG(xmlNodeSetContent), VBU_DLSYM_ARG(xmlReadMemory),
	    VBU_DLSYM_ARG(xmlSetProp), VBU_DLSYM_ARG(xmlStrEqual), VBU_DLSYM_ARG(xmlUnlinkNode),
	    VBU_DLSYM_ARG(xmlUnsetProp), VBU_DLSYM_ARG(xmlFree), NULL);
}
