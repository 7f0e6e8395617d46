/* restore_domain.c: a libvirt definition of a new VM from a point's domain.xml (see
 * restore_domain.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common.h"
#include "file.h"
#include "restore_domain.h"
#include "util.h"
#include "virt_dl.h"
#include "xml_dl.h"

/* libvirt's own limit on names is far larger; this keeps file names below libvirt's
 * (logs, NVRAM) reasonable. */
#define NAME_MAX_LEN 200

typedef struct rsecret {
	char *disk;
	char uuid[VBU_UUID_LEN + 1];
	char *xml, *xml_path;
	const char *key_path; /* points into rdom's disks */
} rsecret;

struct rdom {
	char *name, *dir, *xml_path;
	char uuid[VBU_UUID_LEN + 1];
	xmlChar *xml;
	int xml_len;
	rsecret *secrets;
	size_t n_secrets;
	char **notes; /* lines printed after the write: disks left out or not attached */
	size_t n_notes;
	rdom_disk *disks;
	size_t n_disks;
};

void rdom_free(rdom *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_secrets; i++) {
		free(r->secrets[i].disk);
		free(r->secrets[i].xml);
		free(r->secrets[i].xml_path);
	}
	for (size_t i = 0; i < r->n_notes; i++)
		free(r->notes[i]);
	for (size_t i = 0; i < r->n_disks; i++) {
		free((char *)r->disks[i].name);
		free((char *)r->disks[i].path);
		free((char *)r->disks[i].key_path);
	}
	free(r->disks);
	free(r->notes);
	free(r->secrets);
	(*sym_xmlFree)(r->xml);
	free(r->name);
	free(r->dir);
	free(r->xml_path);
	free(r);
}

const char *rdom_name(const rdom *r)
{
	return r->name;
}

static int oom(void)
{
	vbu_errno(-ENOMEM, "cannot make the domain definition");
	return VMBAK_EXIT_FAIL;
}

static int new_uuid(char out[VBU_UUID_LEN + 1])
{
	uint8_t b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	vbu_uuid_format(b, out);
	return 0;
}

/* A locally administered address in QEMU's range, as libvirt makes them. */
static int new_mac(char out[18])
{
	uint8_t b[3];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	snprintf(out, 18, "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
	return 0;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && sym_xmlStrEqual(c->name, BAD_CAST name))
			return c;
	return NULL;
}

static void drop(xmlNodePtr n)
{
	if (n) {
		sym_xmlUnlinkNode(n);
		sym_xmlFreeNode(n);
	}
}

/* Every child element called name removed. */
static void drop_all(xmlNodePtr n, const char *name)
{
	xmlNodePtr c;

	while ((c = child(n, name)))
		drop(c);
}

static int set_text(xmlNodePtr parent, const char *name, const char *text)
{
	xmlNodePtr c = child(parent, name);

	if (!c)
		return sym_xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text) ? 0
										       : -ENOMEM;
	sym_xmlNodeSetContent(c, NULL);
	sym_xmlNodeAddContent(c, BAD_CAST text);
	return 0;
}

static int add_note(rdom *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_note(rdom *r, const char *fmt, ...)
{
	char *s, **nn = realloc(r->notes, (r->n_notes + 1) * sizeof(*nn));
	va_list ap;
	int e;

	if (!nn)
		return -ENOMEM;
	r->notes = nn;
	va_start(ap, fmt);
	e = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (e < 0)
		return -ENOMEM;
	r->notes[r->n_notes++] = s;
	return 0;
}

/* A secret for the restored disk d (LUKS passphrase): its XML and path. */
static int add_secret(rdom *r, const rdom_disk *d, const char **ret_uuid)
{
	rsecret *s, *ns = realloc(r->secrets, (r->n_secrets + 1) * sizeof(*ns));
	xmlDocPtr doc = NULL;
	xmlNodePtr root, usage;
	xmlChar *text = NULL;
	char desc[512];
	int len = 0;

	if (!ns)
		return -ENOMEM;
	r->secrets = ns;
	s = &ns[r->n_secrets];
	memset(s, 0, sizeof(*s));
	if (new_uuid(s->uuid) < 0)
		return -EIO;
	snprintf(desc, sizeof(desc), "passphrase of disk %s of VM %s (vmbak restore)", d->name,
		 r->name);
	doc = sym_xmlNewDoc(BAD_CAST "1.0");
	root = doc ? sym_xmlNewNode(NULL, BAD_CAST "secret") : NULL;
	if (!root) {
		sym_xmlFreeDoc(doc);
		return -ENOMEM;
	}
	sym_xmlDocSetRootElement(doc, root);
	sym_xmlNewProp(root, BAD_CAST "ephemeral", BAD_CAST "no");
	sym_xmlNewProp(root, BAD_CAST "private", BAD_CAST "yes");
	sym_xmlNewTextChild(root, NULL, BAD_CAST "uuid", BAD_CAST s->uuid);
	sym_xmlNewTextChild(root, NULL, BAD_CAST "description", BAD_CAST desc);
	usage = sym_xmlNewChild(root, NULL, BAD_CAST "usage", NULL);
	if (usage) {
		sym_xmlNewProp(usage, BAD_CAST "type", BAD_CAST "volume");
		sym_xmlNewTextChild(usage, NULL, BAD_CAST "volume", BAD_CAST d->path);
	}
	sym_xmlDocDumpFormatMemory(doc, &text, &len, 1);
	sym_xmlFreeDoc(doc);
	if (!text)
		return -ENOMEM;
	s->xml = strndup((const char *)text, (size_t)len);
	(*sym_xmlFree)(text);
	s->disk = strdup(d->name);
	if (asprintf(&s->xml_path, "%s/%s.secret.xml", r->dir, d->name) < 0)
		s->xml_path = NULL;
	s->key_path = d->key_path;
	r->n_secrets++;
	if (!s->xml || !s->disk || !s->xml_path)
		return -ENOMEM;
	*ret_uuid = s->uuid;
	return 0;
}

/* One <disk> of the original: rewritten onto its restored file, left out (removed), or kept (a
 * cdrom or floppy that is not restored). Returns 0, an exit status (a message printed), or -1
 * when out of memory. */
static int rewrite_disk(rdom *r, xmlNodePtr disk, unsigned char *used)
{
	xmlNodePtr target = child(disk, "target"), src = child(disk, "source"), enc, driver;
	xmlChar *dev = target ? sym_xmlGetProp(target, BAD_CAST "dev") : NULL;
	xmlChar *device = sym_xmlGetProp(disk, BAD_CAST "device"), *format = NULL;
	const rdom_disk *d = NULL;
	const char *secret_uuid = NULL;
	int status = VMBAK_EXIT_FAIL, luks = 0;

	for (size_t i = 0; dev && i < r->n_disks; i++)
		if (strcmp(r->disks[i].name, (const char *)dev) == 0) {
			d = &r->disks[i];
			used[i] = 1;
		}
	if (!d) {
		if (device && (sym_xmlStrEqual(device, BAD_CAST "cdrom") ||
			       sym_xmlStrEqual(device, BAD_CAST "floppy"))) {
			status = 0;
			goto out;
		}
		if (add_note(r,
			     "disk '%s' of the original VM is not restored: left out of the "
			     "definition",
			     dev ? (const char *)dev : "?") < 0) {
			status = -1;
			goto out;
		}
		drop(disk);
		status = 0;
		goto out;
	}
	enc = child(disk, "encryption");
	if (!enc)
		enc = child(src, "encryption");
	if (enc) {
		format = sym_xmlGetProp(enc, BAD_CAST "format");
		if (!format || !sym_xmlStrEqual(format, BAD_CAST "luks")) {
			vbu_err(
			    "disk '%s' has libvirt encryption '%s': only luks can be restored into "
			    "a definition",
			    d->name, format ? q((const char *)format) : "");
			goto out;
		}
		luks = 1;
		if (d->qcow2) {
			vbu_err("disk '%s' is encrypted by libvirt (luks): restore it as raw "
				"(not --format qcow2 or --instant) for a domain definition",
				d->name);
			goto out;
		}
		if (!d->key_path) {
			vbu_err("disk '%s' is encrypted by libvirt (luks): give --keyvault KV to "
				"restore its escrowed passphrase",
				d->name);
			goto out;
		}
	}
	/* The restored file, and nothing of where the original's disk was. */
	drop_all(disk, "source");
	drop_all(disk, "backingStore");
	drop_all(disk, "mirror");
	drop_all(disk, "auth");
	drop_all(disk, "encryption");
	sym_xmlSetProp(disk, BAD_CAST "type", BAD_CAST "file");
	src = sym_xmlNewChild(disk, NULL, BAD_CAST "source", NULL);
	if (!src || !sym_xmlNewProp(src, BAD_CAST "file", BAD_CAST d->path)) {
		status = -1;
		goto out;
	}
	driver = child(disk, "driver");
	if (!driver && !(driver = sym_xmlNewChild(disk, NULL, BAD_CAST "driver", NULL))) {
		status = -1;
		goto out;
	}
	sym_xmlSetProp(driver, BAD_CAST "name", BAD_CAST "qemu");
	sym_xmlSetProp(driver, BAD_CAST "type", BAD_CAST(d->qcow2 ? "qcow2" : "raw"));
	if (luks) {
		xmlNodePtr e, s;

		if (add_secret(r, d, &secret_uuid) < 0) {
			status = -1;
			goto out;
		}
		e = sym_xmlNewChild(src, NULL, BAD_CAST "encryption", NULL);
		s = e ? sym_xmlNewChild(e, NULL, BAD_CAST "secret", NULL) : NULL;
		if (!s) {
			status = -1;
			goto out;
		}
		sym_xmlNewProp(e, BAD_CAST "format", BAD_CAST "luks");
		sym_xmlNewProp(s, BAD_CAST "type", BAD_CAST "passphrase");
		sym_xmlNewProp(s, BAD_CAST "uuid", BAD_CAST secret_uuid);
	}
	status = 0;
out:
	(*sym_xmlFree)(dev);
	(*sym_xmlFree)(device);
	(*sym_xmlFree)(format);
	return status;
}

/* A serial port or console that writes to a file writes to one of the new VM's own,
 * DIR/console-<the file's name> (the prefix keeps it off the restored files' names; a serial
 * port and its console, which share a file, still do). */
static int move_log(rdom *r, xmlNodePtr n)
{
	xmlNodePtr src = child(n, "source");
	xmlChar *type = sym_xmlGetProp(n, BAD_CAST "type"), *path = NULL;
	const char *base;
	char *np = NULL;
	int e = 0;

	if (!type || !sym_xmlStrEqual(type, BAD_CAST "file") || !src ||
	    !(path = sym_xmlGetProp(src, BAD_CAST "path")))
		goto out;
	base = strrchr((const char *)path, '/');
	base = base ? base + 1 : (const char *)path;
	if (!*base)
		base = "log";
	if (asprintf(&np, "%s/console-%s", r->dir, base) < 0) {
		np = NULL;
		e = -ENOMEM;
		goto out;
	}
	sym_xmlSetProp(src, BAD_CAST "path", BAD_CAST np);
out:
	free(np);
	(*sym_xmlFree)(type);
	(*sym_xmlFree)(path);
	return e;
}

static int rewrite(rdom *r, xmlNodePtr dom)
{
	xmlNodePtr devices = child(dom, "devices"), os = child(dom, "os"), n, next;
	unsigned char *used = calloc(r->n_disks ? r->n_disks : 1, 1);
	char mac[18];
	int status = VMBAK_EXIT_FAIL, st;

	if (!used)
		return oom();
	sym_xmlUnsetProp(dom, BAD_CAST "id"); /* a running domain's number */
	if (set_text(dom, "name", r->name) < 0 || set_text(dom, "uuid", r->uuid) < 0)
		goto nomem;
	/* A VM generation id of its own (libvirt makes one for an empty element). */
	if ((n = child(dom, "genid")))
		sym_xmlNodeSetContent(n, NULL);
	/* The original's NVRAM file is the original's: the new VM gets its own from the
	 * template. */
	if ((n = child(os, "nvram"))) {
		if (n->properties)
			sym_xmlNodeSetContent(n, NULL);
		else
			drop(n);
	}
	for (n = devices ? devices->children : NULL; n; n = next) {
		next = n->next;
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (sym_xmlStrEqual(n->name, BAD_CAST "disk")) {
			st = rewrite_disk(r, n, used);
			if (st < 0)
				goto nomem;
			if (st > 0)
				goto out;
		} else if (sym_xmlStrEqual(n->name, BAD_CAST "serial") ||
			   sym_xmlStrEqual(n->name, BAD_CAST "console")) {
			if ((st = move_log(r, n)) != 0)
				goto nomem;
		} else if (sym_xmlStrEqual(n->name, BAD_CAST "interface")) {
			xmlNodePtr m = child(n, "mac");

			if (new_mac(mac) < 0) {
				vbu_err("cannot make a MAC address: no random bytes");
				goto out;
			}
			if (!m && !(m = sym_xmlNewChild(n, NULL, BAD_CAST "mac", NULL)))
				goto nomem;
			sym_xmlSetProp(m, BAD_CAST "address", BAD_CAST mac);
		}
	}
	for (size_t i = 0; i < r->n_disks; i++)
		if (!used[i] && add_note(r,
					 "disk '%s' has no <disk> with that target in the domain "
					 "XML: restored, not attached",
					 r->disks[i].name) < 0)
			goto nomem;
	status = 0;
	goto out;
nomem:
	status = oom();
out:
	free(used);
	return status;
}

int rdom_plan(const char *xml, size_t len, const char *name, const char *dir, const rdom_disk *d,
	      size_t n, const char *origin, rdom **ret)
{
	rdom *r = calloc(1, sizeof(*r));
	xmlDocPtr doc = NULL;
	xmlNodePtr root;
	int status = VMBAK_EXIT_FAIL;

	if (!r)
		return oom();
	if (dlopen_libxml2() < 0) {
		free(r);
		vbu_err("%s", vbu_errmsg());
		return VMBAK_EXIT_FAIL;
	}
	if (!name[0] || strlen(name) > NAME_MAX_LEN || strchr(name, '/')) {
		vbu_err("invalid VM name '%s' for the domain: 1 to %d characters, no '/'", q(name),
			NAME_MAX_LEN);
		goto out;
	}
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			vbu_err("invalid VM name for the domain: it has control characters");
			goto out;
		}
	r->name = strdup(name);
	r->dir = strdup(dir);
	r->disks = calloc(n ? n : 1, sizeof(*r->disks));
	if (!r->name || !r->dir || !r->disks || asprintf(&r->xml_path, "%s/domain.xml", dir) < 0) {
		r->xml_path = NULL;
		status = oom();
		goto out;
	}
	for (size_t i = 0; i < n; i++, r->n_disks++) {
		r->disks[i].qcow2 = d[i].qcow2;
		r->disks[i].name = strdup(d[i].name);
		r->disks[i].path = strdup(d[i].path);
		r->disks[i].key_path = d[i].key_path ? strdup(d[i].key_path) : NULL;
		if (!r->disks[i].name || !r->disks[i].path ||
		    (d[i].key_path && !r->disks[i].key_path)) {
			r->n_disks++;
			status = oom();
			goto out;
		}
	}
	if (new_uuid(r->uuid) < 0) {
		vbu_err("cannot make a UUID: no random bytes");
		goto out;
	}
	if (len > INT32_MAX)
		len = 0;
	doc = sym_xmlReadMemory(xml, (int)len, "domain.xml", NULL,
				XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
				    XML_PARSE_NOWARNING);
	root = doc ? sym_xmlDocGetRootElement(doc) : NULL;
	if (!root || !sym_xmlStrEqual(root->name, BAD_CAST "domain")) {
		vbu_err("the domain.xml of point %s is not a libvirt domain definition", origin);
		goto out;
	}
	if ((status = rewrite(r, root)) != 0)
		goto out;
	status = VMBAK_EXIT_FAIL;
	sym_xmlDocDumpFormatMemory(doc, &r->xml, &r->xml_len, 1);
	if (!r->xml) {
		status = oom();
		goto out;
	}
	*ret = r;
	r = NULL;
	status = 0;
out:
	sym_xmlFreeDoc(doc);
	rdom_free(r);
	return status;
}

static int check_new(const char *path, int force)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return 0;
	if (!force || !S_ISREG(st.st_mode)) {
		vbu_err("'%s' exists%s", q(path),
			force ? " and is not a file" : " (use --force to replace it)");
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

int rdom_check_files(const rdom *r, int force)
{
	int status = check_new(r->xml_path, force);

	for (size_t i = 0; status == 0 && i < r->n_secrets; i++)
		status = check_new(r->secrets[i].xml_path, force);
	return status;
}

int rdom_write(const rdom *r, int print_commands)
{
	int e;

	for (size_t i = 0; i < r->n_secrets; i++) {
		e = vbu_write_file_atomic(r->secrets[i].xml_path, r->secrets[i].xml,
					  strlen(r->secrets[i].xml), 0644);
		if (e < 0) {
			vbu_errno(e, "cannot write '%s'", q(r->secrets[i].xml_path));
			return VMBAK_EXIT_FAIL;
		}
	}
	e = vbu_write_file_atomic(r->xml_path, r->xml, (size_t)r->xml_len, 0644);
	if (e < 0) {
		vbu_errno(e, "cannot write '%s'", q(r->xml_path));
		return VMBAK_EXIT_FAIL;
	}
	for (size_t i = 0; i < r->n_notes; i++)
		printf("domain: %s\n", r->notes[i]);
	for (size_t i = 0; i < r->n_secrets; i++)
		printf("%s: libvirt secret %s -> %s, its value in %s\n", r->secrets[i].disk,
		       r->secrets[i].uuid, r->secrets[i].xml_path, r->secrets[i].key_path);
	printf("domain: new VM '%s' (uuid %s) -> %s\n", r->name, r->uuid, r->xml_path);
	if (print_commands) {
		printf("to define it:");
		for (size_t i = 0; i < r->n_secrets; i++)
			printf(
			    " virsh secret-define %s; virsh secret-set-value %s --file %s --plain;",
			    r->secrets[i].xml_path, r->secrets[i].uuid, r->secrets[i].key_path);
		printf(" virsh define %s\n", r->xml_path);
	}
	return 0;
}

/* libvirt prints every error on stderr by default; ours say what failed in one line. */
static void quiet(void *arg, virErrorPtr err)
{
}

static const char *lv_msg(void)
{
	const char *m = sym_virGetLastErrorMessage();

	return m ? m : "unknown error";
}

int rdom_connect(const rdom *r, const char *uri, void **ret)
{
	virConnectPtr c;
	virDomainPtr dom;

	if (dlopen_libvirt() < 0) {
		vbu_err("%s", vbu_errmsg());
		return VMBAK_EXIT_FAIL;
	}
	sym_virSetErrorFunc(NULL, quiet);
	c = sym_virConnectOpen(uri);
	if (!c) {
		if (uri)
			vbu_err("cannot connect to libvirt at '%s': %s", q(uri), lv_msg());
		else
			vbu_err("cannot connect to libvirt: %s", lv_msg());
		return VMBAK_EXIT_FAIL;
	}
	dom = sym_virDomainLookupByName(c, r->name);
	if (dom) {
		sym_virDomainFree(dom);
		sym_virConnectClose(c);
		vbu_err("libvirt already has a domain named '%s': give another --name", q(r->name));
		return VMBAK_EXIT_FAIL;
	}
	*ret = c;
	return 0;
}

void rdom_disconnect(void *conn)
{
	if (conn)
		sym_virConnectClose(conn);
}

int rdom_define(const rdom *r, void *conn)
{
	virSecretPtr *made = calloc(r->n_secrets ? r->n_secrets : 1, sizeof(*made));
	virDomainPtr dom = NULL;
	size_t n = 0;
	int status = VMBAK_EXIT_FAIL;

	if (!made)
		return oom();
	for (; n < r->n_secrets; n++) {
		const rsecret *s = &r->secrets[n];
		char *val = NULL;
		size_t vlen = 0;
		int e;

		made[n] = sym_virSecretDefineXML(conn, s->xml, 0);
		if (!made[n]) {
			vbu_err("cannot define the libvirt secret of disk '%s': %s", s->disk,
				lv_msg());
			goto out;
		}
		e = vbu_read_file(s->key_path, 64 << 10, &val, &vlen);
		if (e < 0) {
			vbu_errno(e, "cannot read '%s'", q(s->key_path));
			n++;
			goto out;
		}
		e = sym_virSecretSetValue(made[n], (const unsigned char *)val, vlen, 0);
		OPENSSL_cleanse(val, vlen);
		free(val);
		if (e < 0) {
			vbu_err("cannot set the libvirt secret of disk '%s': %s", s->disk,
				lv_msg());
			n++;
			goto out;
		}
	}
	dom = sym_virDomainDefineXML(conn, (const char *)r->xml);
	if (!dom) {
		vbu_err("cannot define domain '%s' in libvirt: %s", q(r->name), lv_msg());
		goto out;
	}
	printf("domain: defined '%s' in libvirt\n", r->name);
	status = 0;
out:
	for (size_t i = 0; i < n; i++) {
		if (status != 0 && made[i])
			sym_virSecretUndefine(made[i]);
		if (made[i])
			sym_virSecretFree(made[i]);
	}
	if (dom)
		sym_virDomainFree(dom);
	free(made);
	return status;
}
