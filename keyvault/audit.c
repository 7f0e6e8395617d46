/* audit.c: the key vault's audit log (see audit.h). */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "audit.h"
#include "crypto.h"
#include "file.h"
#include "kv.h"
#include "kv_internal.h"
#include "util.h"

#define KEY_LABEL "vmbak-keyvault-audit v1"
#define HASH_LABEL "vmbak-keyvault-audit-unauthenticated v1"
#define MAC_SEP ",\"mac\":\""
#define PFX_HMAC "hmac-sha256:"
#define PFX_HASH "sha256:"
#define LOG_MAX (256u << 20) /* a larger log is not read (about a million lines) */

typedef struct chain {
	uint64_t seq;
	uint8_t c[VBK_HASH_LEN];
} chain;

static char *log_path(const char *kv_path)
{
	size_t n = strlen(kv_path) + sizeof(VBK_AUDIT_FILE) + 1;
	char *p = malloc(n);

	if (p && snprintf(p, n, "%s/%s", kv_path, VBK_AUDIT_FILE) < 0) {
		free(p);
		p = NULL;
	}
	return p;
}

/* K: HMAC-SHA256 under the private-keys key of the label and the key vault id. */
static int audit_key(const vbk_kv *kv, uint8_t k[VBK_HASH_LEN])
{
	char msg[sizeof(KEY_LABEL) + VBK_KV_ID_LEN + 1];

	memcpy(msg, KEY_LABEL, sizeof(KEY_LABEL)); /* with its NUL */
	memcpy(msg + sizeof(KEY_LABEL), kv->id, VBK_KV_ID_LEN);
	return vbk_hmac_sha256(kv->keys.id_key, msg, sizeof(KEY_LABEL) + VBK_KV_ID_LEN, k);
}

/* The next chain value: with key (authenticated) or without. */
static int chain_next(const uint8_t *key, const uint8_t prev[VBK_HASH_LEN], const char *p,
		      size_t len, uint8_t out[VBK_HASH_LEN])
{
	uint8_t *buf;
	size_t off = key ? 0 : sizeof(HASH_LABEL), n = off + VBK_HASH_LEN + len;
	int r;

	buf = malloc(n);
	if (!buf)
		return -ENOMEM;
	if (!key)
		memcpy(buf, HASH_LABEL, sizeof(HASH_LABEL));
	memcpy(buf + off, prev, VBK_HASH_LEN);
	memcpy(buf + off + VBK_HASH_LEN, p, len);
	r = key ? vbk_hmac_sha256(key, buf, n, out) : vbk_sha256(buf, n, out);
	free(buf);
	return r;
}

/* Splits a whole line (without its newline) into the chained prefix and its "mac": 1 for
 * hmac-sha256, 0 for sha256, -EPROTO when it has not the form. */
static int split_line(const char *line, size_t len, size_t *ret_plen, uint8_t mac[VBK_HASH_LEN])
{
	const char *m = NULL, *p, *end = line + len;
	char hex[2 * VBK_HASH_LEN + 1];
	int hmac;

	for (p = line; (p = memmem(p, (size_t)(end - p), MAC_SEP, sizeof(MAC_SEP) - 1)); p++)
		m = p;
	if (!m)
		return -EPROTO;
	p = m + sizeof(MAC_SEP) - 1;
	if ((size_t)(end - p) == sizeof(PFX_HMAC) - 1 + 2 * VBK_HASH_LEN + 2 &&
	    memcmp(p, PFX_HMAC, sizeof(PFX_HMAC) - 1) == 0) {
		hmac = 1;
		p += sizeof(PFX_HMAC) - 1;
	} else if ((size_t)(end - p) == sizeof(PFX_HASH) - 1 + 2 * VBK_HASH_LEN + 2 &&
		   memcmp(p, PFX_HASH, sizeof(PFX_HASH) - 1) == 0) {
		hmac = 0;
		p += sizeof(PFX_HASH) - 1;
	} else {
		return -EPROTO;
	}
	if (memcmp(p + 2 * VBK_HASH_LEN, "\"}", 2) != 0)
		return -EPROTO;
	memcpy(hex, p, 2 * VBK_HASH_LEN);
	hex[2 * VBK_HASH_LEN] = '\0';
	if (vbu_hex_decode(hex, mac, VBK_HASH_LEN) < 0)
		return -EPROTO;
	*ret_plen = (size_t)(m - line);
	return hmac;
}

/* The seq of a parsed line, or 0 when it has none. */
static uint64_t line_seq(json_object *o)
{
	json_object *j;
	int64_t x;

	if (!json_object_object_get_ex(o, "seq", &j) || !json_object_is_type(j, json_type_int))
		return 0;
	x = json_object_get_int64(j);
	return x > 0 ? (uint64_t)x : 0;
}

/* The state at the end of the log open as fd (locked): the last whole line's seq and chain
 * value, and *ret_torn the length of an incomplete last line (0 when the log ends with a
 * newline). Only the tail is read: the chain is checked by vbk_audit_verify, not here. */
static int tail_state(int fd, chain *ret, off_t *ret_end, size_t *ret_torn)
{
	char buf[2 * VBK_AUDIT_LINE_MAX + 2];
	struct stat st;
	off_t start;
	size_t got = 0, i, j, plen;
	json_object *o;
	int r;

	memset(ret, 0, sizeof(*ret));
	*ret_torn = 0;
	if (fstat(fd, &st) < 0)
		return -errno;
	*ret_end = st.st_size;
	if (st.st_size == 0)
		return 0;
	start = st.st_size > (off_t)sizeof(buf) ? st.st_size - (off_t)sizeof(buf) : 0;
	r = vbu_pread_full(fd, buf, (size_t)(st.st_size - start), (uint64_t)start, &got);
	if (r < 0)
		return r;
	if (got != (size_t)(st.st_size - start))
		return -EIO;
	i = got;
	while (i > 0 && buf[i - 1] != '\n')
		i--;
	*ret_torn = got - i;
	if (*ret_torn > VBK_AUDIT_LINE_MAX)
		return -EPROTO;
	if (i == 0) {
		if (start > 0)
			return -EPROTO;
		return 0; /* only a fragment: the log starts again */
	}
	/* buf[j..i-1) is the last whole line. */
	j = i - 1;
	while (j > 0 && buf[j - 1] != '\n')
		j--;
	if (j == 0 && start > 0)
		return -EPROTO;
	buf[i - 1] = '\0';
	if (split_line(buf + j, i - 1 - j, &plen, ret->c) < 0)
		return -EPROTO;
	o = json_tokener_parse(buf + j);
	ret->seq = o ? line_seq(o) : 0;
	json_object_put(o);
	if (ret->seq == 0)
		return -EPROTO;
	return 0;
}

static const char *user_name(char *buf, size_t cap)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(getuid(), &pw, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(buf, cap, "%s", res->pw_name);
	else
		snprintf(buf, cap, "uid %u", (unsigned)getuid());
	return buf;
}

static int add_str(json_object *o, const char *k, const char *v)
{
	json_object *j = json_object_new_string(v);

	if (!j || json_object_object_add(o, k, j) < 0) {
		json_object_put(j);
		return -ENOMEM;
	}
	return 0;
}

static int add_int(json_object *o, const char *k, int64_t v)
{
	json_object *j = json_object_new_int64(v);

	if (!j || json_object_object_add(o, k, j) < 0) {
		json_object_put(j);
		return -ENOMEM;
	}
	return 0;
}

/* The prefix of line seq (malloc'ed text, without the "mac" member and closing brace). */
static int line_prefix(const vbk_audit_event *e, uint64_t seq, char **ret)
{
	char t[21], user[256], host[256];
	json_object *o = json_object_new_object();
	const char *s;
	size_t n;
	int r = -ENOMEM;

	vbu_format_time(vbu_now_ns() / 1000000000, t);
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	if (!o || add_int(o, "seq", (int64_t)seq) < 0 || add_str(o, "time", t) < 0 ||
	    add_str(o, "user", user_name(user, sizeof(user))) < 0 || add_str(o, "host", host) < 0 ||
	    add_str(o, "op", e->op ? e->op : "unknown") < 0 ||
	    (e->key && add_str(o, "key", e->key) < 0) ||
	    (e->key && e->version && add_int(o, "version", e->version) < 0) ||
	    (e->secret && add_str(o, "secret", e->secret) < 0) ||
	    (e->secret && e->secret_version &&
	     add_int(o, "secret_version", e->secret_version) < 0) ||
	    (e->detail && add_str(o, "detail", e->detail) < 0) ||
	    add_str(o, "result", e->result == 0 ? "ok" : "failed") < 0 ||
	    (e->result != 0 &&
	     add_str(o, "error", e->error ? e->error : vbu_strerror(-e->result)) < 0))
		goto out;
	s = json_object_to_json_string_ext(o,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s)
		goto out;
	n = strlen(s);
	if (n < 2 || s[n - 1] != '}') {
		r = -EIO;
		goto out;
	}
	if (n + 128 > VBK_AUDIT_LINE_MAX) {
		r = -E2BIG;
		goto out;
	}
	*ret = strndup(s, n - 1);
	r = *ret ? 0 : -ENOMEM;
out:
	json_object_put(o);
	return r;
}

/* Appends one line for e to the log open as fd (locked), after st; *st becomes the new end. */
static int append_line(int fd, const uint8_t *key, chain *st, const vbk_audit_event *e)
{
	char *p = NULL, *line = NULL, hex[2 * VBK_HASH_LEN + 1];
	uint8_t c[VBK_HASH_LEN];
	size_t n;
	int r;

	r = line_prefix(e, st->seq + 1, &p);
	if (r < 0)
		return r;
	r = chain_next(key, st->c, p, strlen(p), c);
	if (r < 0)
		goto out;
	vbu_hex_encode(c, sizeof(c), hex);
	n = strlen(p) + sizeof(MAC_SEP) + sizeof(PFX_HMAC) + sizeof(hex) + 4;
	line = malloc(n);
	if (!line) {
		r = -ENOMEM;
		goto out;
	}
	r = snprintf(line, n, "%s" MAC_SEP "%s%s\"}\n", p, key ? PFX_HMAC : PFX_HASH, hex);
	if (r < 0 || (size_t)r >= n) {
		r = -EIO;
		goto out;
	}
	/* One write of the whole line: O_APPEND puts it at the end, and a crash leaves at most
	 * an incomplete last line (no newline), which the next append removes. */
	r = vbu_write_all(fd, line, strlen(line));
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0)
		goto out;
	st->seq++;
	memcpy(st->c, c, sizeof(c));
out:
	free(p);
	free(line);
	return r;
}

/* Opens and locks kv_path's log, repairs an incomplete last line, appends e, and gives the new
 * state. key NULL: an unauthenticated line. */
static int append_at(const char *kv_path, const uint8_t *key, const vbk_audit_event *e, chain *ret)
{
	char *path = log_path(kv_path), detail[128];
	chain st;
	off_t end = 0;
	size_t torn = 0;
	int fd = -1, r;

	if (!path)
		return kv_fail(-ENOMEM, "out of memory");
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		r = kv_fail(-errno, "cannot open audit log '%s': %s", path, vbu_strerror(errno));
		goto out;
	}
	while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		r = kv_fail(-errno, "cannot lock audit log '%s': %s", path, vbu_strerror(errno));
		goto out;
	}
	r = tail_state(fd, &st, &end, &torn);
	if (r == -EPROTO) {
		r = kv_fail(r,
			    "audit log '%s' does not end with an audit line: it was changed or "
			    "damaged (see vmbak keyvault audit)",
			    path);
		goto out;
	}
	if (r < 0) {
		r = kv_fail(r, "cannot read audit log '%s': %s", path, vbu_strerror(-r));
		goto out;
	}
	if (torn > 0) {
		vbk_audit_event rep = {.op = "audit-repair", .detail = detail};

		snprintf(detail, sizeof(detail),
			 "removed an incomplete last line of %zu bytes (an append cut short)",
			 torn);
		if (ftruncate(fd, end - (off_t)torn) < 0 || fsync(fd) < 0) {
			r = kv_fail(-errno, "cannot repair audit log '%s': %s", path,
				    vbu_strerror(errno));
			goto out;
		}
		r = append_line(fd, key, &st, &rep);
		if (r < 0)
			goto fail;
	}
	r = append_line(fd, key, &st, e);
fail:
	if (r == -E2BIG)
		r = kv_fail(-EINVAL, "cannot write audit log '%s': the event is too long", path);
	else if (r < 0)
		r = kv_fail(r, "cannot write audit log '%s': %s", path, vbu_strerror(-r));
	else if (ret)
		*ret = st;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return r;
}

int vbk_audit_append(vbk_kv *kv, const vbk_audit_event *e)
{
	uint8_t key[VBK_HASH_LEN];
	int r, unlocked = kv && kv->unlocked;

	if (unlocked && (r = audit_key(kv, key)) < 0)
		return kv_fail(r, "out of memory");
	r = append_at(kv->path, unlocked ? key : NULL, e, NULL);
	vbk_wipe(key, sizeof(key));
	return r;
}

int kv_audit_record(vbk_kv *kv, json_object *root, const vbk_audit_event *e)
{
	uint8_t key[VBK_HASH_LEN];
	char hex[2 * VBK_HASH_LEN + 1];
	json_object *a;
	chain st;
	int r;

	if (!kv->unlocked)
		return kv_fail(-ENOKEY, "key vault '%s' is locked", kv->path);
	r = audit_key(kv, key);
	if (r < 0)
		return kv_fail(r, "out of memory");
	r = append_at(kv->path, key, e, &st);
	vbk_wipe(key, sizeof(key));
	if (r < 0)
		return r;
	vbu_hex_encode(st.c, sizeof(st.c), hex);
	a = json_object_new_object();
	if (!a || add_int(a, "lines", (int64_t)st.seq) < 0 || add_str(a, "chain", hex) < 0 ||
	    json_object_object_add(root, "audit", a) < 0) {
		json_object_put(a);
		return kv_fail(-ENOMEM, "out of memory");
	}
	return 0;
}

void kv_audit_undone(vbk_kv *kv, const vbk_audit_event *e, int err)
{
	vbk_audit_event f = *e;
	char msg[1024];

	snprintf(msg, sizeof(msg), "the change was not written: %s",
		 *vbu_errmsg() ? vbu_errmsg() : vbu_strerror(-err));
	f.result = err;
	f.error = msg;
	vbk_audit_append(kv, &f); /* best effort: the failure is already reported */
	kv_fail(err, "%s", msg + strlen("the change was not written: "));
}

/* ---- reading ---- */

/* The "audit" member of the signed file: lines and chain, or lines 0. */
static int signed_state(json_object *root, chain *ret)
{
	json_object *a, *j;
	const char *s;

	memset(ret, 0, sizeof(*ret));
	if (!json_object_object_get_ex(root, "audit", &a))
		return 0;
	if (!json_object_is_type(a, json_type_object) ||
	    !json_object_object_get_ex(a, "lines", &j) || !json_object_is_type(j, json_type_int) ||
	    json_object_get_int64(j) < 1 || !json_object_object_get_ex(a, "chain", &j) ||
	    !json_object_is_type(j, json_type_string) || !(s = json_object_get_string(j)) ||
	    strlen(s) != 2 * VBK_HASH_LEN || vbu_hex_decode(s, ret->c, VBK_HASH_LEN) < 0)
		return -EPROTO;
	json_object_object_get_ex(a, "lines", &j);
	ret->seq = (uint64_t)json_object_get_int64(j);
	return 0;
}

int vbk_audit_verify(vbk_kv *kv, void (*cb)(void *arg, uint64_t seq, json_object *line, int hmac),
		     void *arg, vbk_audit_result *ret)
{
	uint8_t key[VBK_HASH_LEN], c[VBK_HASH_LEN] = {0}, mac[VBK_HASH_LEN], want[VBK_HASH_LEN];
	char *path = NULL, *buf = NULL;
	size_t len = 0, pos = 0, plen;
	uint64_t seq = 0;
	chain sg;
	int r, hmac;

	memset(ret, 0, sizeof(*ret));
	kv_clear_err();
	if (!kv->unlocked)
		return kv_fail(-ENOKEY, "key vault '%s' is locked", kv->path);
	if (signed_state(kv->root, &sg) < 0)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'audit'", kv->file);
	ret->signed_lines = sg.seq;
	path = log_path(kv->path);
	if (!path)
		return kv_fail(-ENOMEM, "out of memory");
	if ((r = audit_key(kv, key)) < 0) {
		r = kv_fail(r, "out of memory");
		goto out;
	}
	r = vbu_read_file(path, LOG_MAX, &buf, &len);
	if (r == -ENOENT) {
		len = 0;
		r = 0;
	} else if (r == -EFBIG) {
		r = kv_fail(r, "cannot read audit log '%s': larger than %u MiB", path, LOG_MAX >> 20);
		goto out;
	} else if (r < 0) {
		r = kv_fail(r, "cannot read audit log '%s': %s", path, vbu_strerror(-r));
		goto out;
	}
	while (pos < len) {
		char *nl = memchr(buf + pos, '\n', len - pos), *line = buf + pos;
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		json_object *o;

		if (!nl) {
			r = kv_fail(-EPIPE,
				    "audit log '%s': its last line (%llu) is incomplete: an append "
				    "was cut short (the next append removes it)",
				    path, (unsigned long long)seq + 1);
			goto out;
		}
		*nl = '\0';
		hmac = n <= VBK_AUDIT_LINE_MAX && memchr(line, '\0', n) == NULL
			   ? split_line(line, n, &plen, mac)
			   : -EPROTO;
		o = hmac >= 0 ? json_tokener_parse(line) : NULL;
		if (o && json_object_is_type(o, json_type_object) && line_seq(o) != seq + 1) {
			json_object_put(o);
			r = kv_fail(-EBADMSG,
				    "audit log '%s': the chain breaks at line %llu (it says it is "
				    "line %llu): a line was removed, inserted or moved there",
				    path, (unsigned long long)seq + 1,
				    (unsigned long long)line_seq(o));
			goto out;
		}
		if (!o || !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			r = kv_fail(-EPROTO,
				    "audit log '%s': line %llu is not an audit line: the log was "
				    "changed or damaged",
				    path, (unsigned long long)seq + 1);
			goto out;
		}
		if (chain_next(hmac ? key : NULL, c, line, plen, want) < 0) {
			json_object_put(o);
			r = kv_fail(-ENOMEM, "out of memory");
			goto out;
		}
		if (CRYPTO_memcmp(want, mac, sizeof(mac)) != 0) {
			json_object_put(o);
			r = kv_fail(-EBADMSG,
				    "audit log '%s': the chain breaks at line %llu: a line was "
				    "changed, removed, inserted or moved there",
				    path, (unsigned long long)seq + 1);
			goto out;
		}
		memcpy(c, mac, sizeof(c));
		seq++;
		if (hmac)
			ret->authenticated = seq;
		if (seq == sg.seq && CRYPTO_memcmp(c, sg.c, sizeof(c)) != 0) {
			json_object_put(o);
			r = kv_fail(-EBADMSG,
				    "audit log '%s': line %llu is not the line the key vault "
				    "signed: the log was replaced",
				    path, (unsigned long long)seq);
			goto out;
		}
		ret->lines = seq;
		if (cb)
			cb(arg, seq, o, hmac);
		json_object_put(o);
		pos += n + 1;
	}
	if (seq < sg.seq) {
		r = kv_fail(-ENODATA,
			    "audit log '%s' has %llu lines, fewer than the %llu the key vault "
			    "signed: lines were removed from its end",
			    path, (unsigned long long)seq, (unsigned long long)sg.seq);
		goto out;
	}
	r = 0;
out:
	vbk_wipe(key, sizeof(key));
	free(buf);
	free(path);
	return r;
}
