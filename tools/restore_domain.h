/* restore_domain.h: a libvirt definition of a new VM from a point's domain.xml (vmbak restore).
 *
 * The point keeps the domain XML of the VM it was taken from (rp.h, VBS_RP_DOMAIN_XML). A
 * restore turns it into the definition of another VM, never the original: a new name, a new
 * UUID, new MAC addresses, a VM generation id and NVRAM of its own, each restored disk (the
 * <disk> whose <target dev> is the point's disk name) a plain file at the restored path (raw
 * image or qcow2, the --instant overlays too), disks of the original that are not restored
 * left out (cdroms and floppies kept), and each disk that libvirt encrypts (<encryption
 * format='luks'>) wired to a new libvirt secret whose value is the disk's escrowed passphrase.
 *
 * The XML is parsed with libxml2 (no network, no entity expansion, no DTD); libvirt itself is
 * used only by rdom_connect/rdom_define. Functions that can fail print one line on stderr and
 * return an exit status (front.h); they are not thread-safe (libxml2 and libvirt error state).
 */
#ifndef VMBAK_RESTORE_DOMAIN_H
#define VMBAK_RESTORE_DOMAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct rdom_disk {
	const char *name;     /* the point's disk name, matched to <target dev> */
	const char *path;     /* absolute path of the restored image or overlay */
	int qcow2;	      /* the file is qcow2 (else raw) */
	const char *key_path; /* DIR/<disk>.key holding its escrowed secret, or NULL */
} rdom_disk;

typedef struct rdom rdom;

/* Plans the definition of the VM named name from xml (len bytes, the point's domain.xml),
 * with the files of dir (absolute) for its n restored disks (copied: the caller keeps d). Every
 * refusal comes here, before anything is written: XML that is not a libvirt domain, a disk
 * encrypted by libvirt without its key (or restored as qcow2, which libvirt would take for
 * qcow2's own encryption), an encryption format other than LUKS. *ret: rdom_free. */
int rdom_plan(const char *xml, size_t len, const char *name, const char *dir, const rdom_disk *d,
	      size_t n, const char *origin, rdom **ret);

/* Refuses (exit status 1) when a file rdom_write would write exists, unless force. */
int rdom_check_files(const rdom *r, int force);

/* Writes dir/domain.xml and, for each encrypted disk, dir/<disk>.secret.xml (0644 both,
 * atomically), then prints what was written and the virsh commands that define the VM. */
int rdom_write(const rdom *r, int print_commands);

/* Opens libvirt at uri (NULL: libvirt's default) for rdom_define and refuses a name that
 * a domain already has there (the original's included). *ret: rdom_disconnect. */
int rdom_connect(const rdom *r, const char *uri, void **ret);
void rdom_disconnect(void *conn);

/* Defines the secrets (and sets their values from the key files), then the domain. A failure
 * undefines the secrets it defined. */
int rdom_define(const rdom *r, void *conn);

/* The name of the new VM. */
const char *rdom_name(const rdom *r);

void rdom_free(rdom *r);

#endif
