/* src_nbd.h: disk sources for vmbak ingest that are read over NBD (libnbd): NBD URIs, image
 * files of other formats through a private qemu-nbd, and whatever else exports a disk over NBD
 * (a running VM's fleecing export, a libvirt backup job). Each gives a vbs_source (ingest.h)
 * that vbs_ingest reads like a raw file: holes from the `base:allocation` meta context are
 * neither read nor stored, reads are up to 4 MiB and up to 16 are in flight on one connection
 * (libnbd's asynchronous API).
 *
 * Thread safety: one object, one thread at a time (vbs_ingest calls a source from its own
 * thread only). Messages: every function that fails has set vbu_errmsg() (one line, no program
 * prefix); callers print it with their own context.
 */
#ifndef VMBAK_SRC_NBD_H
#define VMBAK_SRC_NBD_H

#include <stddef.h>
#include <stdint.h>

#include "ingest.h"

/* ---- an NBD connection ---- */

typedef struct src_nbd src_nbd;

/* 1 when s looks like an NBD URI this module takes: nbd://, nbds://, nbd+unix://,
 * nbds+unix:// (as `vmbak ingest --disk NAME=URI` tells a URI from a path). */
int src_nbd_is_uri(const char *s);

/* Connects to the NBD export at uri (libnbd's URI syntax: nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH, nbds:// for TLS, which is then required; TLS files from the
 * URI's tls-* parameters or libnbd's defaults). dirty_bitmap, when not NULL, names a QEMU dirty
 * bitmap whose meta context (qemu:dirty-bitmap:NAME) the export must offer, for
 * src_nbd_dirty. Gives up after a connect timeout of 30 s. label names the source in messages
 * (NULL: the URI); both strings are copied. *ret: close with src_nbd_close.
 * Errors: -EINVAL a bad URI, -ENOTSUP the bitmap is not exported, -ETIMEDOUT, else -errno. */
int src_nbd_open(const char *uri, const char *dirty_bitmap, const char *label, src_nbd **ret);

/* The same, to a unix socket at sock (no URI to escape) and the export named export_name
 * ("" or NULL: the default export). */
int src_nbd_open_unix(const char *sock, const char *export_name, const char *dirty_bitmap,
		      const char *label, src_nbd **ret);

/* The source object of the connection, for vbs_ingest_disk.src; owned by s, valid until
 * src_nbd_close. Its read fails the whole call with -EIO (and a message naming the offset)
 * when the export goes away mid-read; a read that has no answer for 120 s fails -ETIMEDOUT
 * and leaves the connection unusable. */
const vbs_source *src_nbd_source(src_nbd *s);

/* The export's size in bytes. */
uint64_t src_nbd_size(const src_nbd *s);

/* The dirty extents of the bitmap named at open, over the whole disk: *ret is a malloc'ed
 * array of *ret_n extents (never NULL on success; free() it), sorted, unaligned.
 * Errors: -EINVAL no bitmap was named at open, -EIO, -ENOMEM. */
int src_nbd_dirty(src_nbd *s, vbs_extent **ret, size_t *ret_n);

/* Bytes read from the export so far (data reads, not block status). */
uint64_t src_nbd_bytes_read(const src_nbd *s);

/* Disconnects and frees. NULL is fine. */
void src_nbd_close(src_nbd *s);

/* ---- an image file through qemu-nbd ---- */

typedef struct src_image src_image;

/* The formats --format takes: "qcow2, vmdk, vhdx, vpc or raw". */
#define SRC_IMAGE_FORMATS "qcow2, vmdk, vhdx, vpc or raw"
int src_image_format_valid(const char *format);

/* Starts `qemu-nbd --read-only` for the image at path (a regular file or a block device) read
 * as format (src_image_format_valid; never probed: the format is given to QEMU, and the image
 * is opened through QEMU's file protocol, so a path never names another protocol), serving on
 * a unix socket in a fresh private directory (mode 0700) under $TMPDIR or /tmp, and waits up to
 * 30 s until it answers. The server is a child of this process with PR_SET_PDEATHSIG, so it
 * dies with it; after src_image_signals(), SIGINT, SIGTERM and SIGHUP also remove its
 * directory. A qcow2 backing chain is opened by QEMU as the image names it. A server that
 * cannot open the image fails with QEMU's reason in the message ("Could not open backing
 * file ..."). *ret: stop with src_image_stop. */
int src_image_start(const char *path, const char *format, src_image **ret);

/* The unix socket of the running server (for src_nbd_open_unix, default export): owned by
 * im. */
const char *src_image_socket(const src_image *im);

/* Stops the server (SIGTERM, then SIGKILL after 5 s), reaps it and removes its directory.
 * NULL is fine. */
void src_image_stop(src_image *im);

/* Installs handlers for SIGINT, SIGTERM and SIGHUP that stop every running server and remove
 * its directory, then die of the signal as before. Call once, before src_image_start, from a
 * program that does not handle these signals itself. */
void src_image_signals(void);

/* What those handlers do, for a program that handles the signals itself (jobs_cli.h): sends
 * SIGTERM to every running server and removes its directory, without waiting. Async-signal
 * safe. */
void src_image_kill_all(void);

#endif
