/* xml_dl.h: libxml2, loaded when a libvirt domain's XML is first read or written (dl.h). */
#ifndef VMBAK_XML_DL_H
#define VMBAK_XML_DL_H

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "dl.h"

extern VBU_DLSYM_PROTOTYPE(xmlDocDumpFormatMemory);
extern VBU_DLSYM_PROTOTYPE(xmlDocGetRootElement);
extern VBU_DLSYM_PROTOTYPE(xmlDocSetRootElement);
extern VBU_DLSYM_PROTOTYPE(xmlFreeDoc);
extern VBU_DLSYM_PROTOTYPE(xmlFreeNode);
extern VBU_DLSYM_PROTOTYPE(xmlGetProp);
extern VBU_DLSYM_PROTOTYPE(xmlNewChild);
extern VBU_DLSYM_PROTOTYPE(xmlNewDoc);
extern VBU_DLSYM_PROTOTYPE(xmlNewNode);
extern VBU_DLSYM_PROTOTYPE(xmlNewProp);
extern VBU_DLSYM_PROTOTYPE(xmlNewTextChild);
extern VBU_DLSYM_PROTOTYPE(xmlNodeAddContent);
extern VBU_DLSYM_PROTOTYPE(xmlNodeGetContent);
extern VBU_DLSYM_PROTOTYPE(xmlNodeSetContent);
extern VBU_DLSYM_PROTOTYPE(xmlReadMemory);
extern VBU_DLSYM_PROTOTYPE(xmlSetProp);
extern VBU_DLSYM_PROTOTYPE(xmlStrEqual);
extern VBU_DLSYM_PROTOTYPE(xmlUnlinkNode);
extern VBU_DLSYM_PROTOTYPE(xmlUnsetProp);
extern VBU_DLSYM_PROTOTYPE(xmlFree);
/* xmlFree is a variable (xmlmemory.h: the free function xmlMemSetup sets): sym_xmlFree is its
 * address, so a call is (*sym_xmlFree)(p). */

/* Loads libxml2.so.2 and the symbols above (vbu_dlopen_many: 0, or -ELIBACC with vbu_errmsg()
 * "cannot load libxml2.so.2 (needed for libvirt domain XML): ..."). Thread-safe. */
int dlopen_libxml2(void);

#endif
