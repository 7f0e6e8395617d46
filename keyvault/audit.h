/* audit.h: the key vault's audit log, KV/audit.log: who used or changed which key, and when.
 *
 * One JSON object a line, appended (O_APPEND, then fsync) under an exclusive flock(2) of the
 * log itself, never rewritten:
 *
 *   {"seq": N, "time": "YYYY-MM-DDTHH:MM:SSZ", "user": USER, "host": HOST, "op": OP,
 *    "key": NAME, "version": N, "secret": NAME, "secret_version": N, "detail": TEXT,
 *    "result": "ok" | "failed", "error": TEXT, "mac": "hmac-sha256:HEX" | "sha256:HEX"}
 *
 * (key, version, secret, secret_version, detail and error only when they apply). seq counts
 * from 1. The last member, "mac", chains the line to every line before it: with C(0) 32 zero
 * bytes and P(N) the bytes of line N up to (not including) ',"mac":',
 *
 *   hmac-sha256  C(N) = HMAC-SHA256(K, C(N-1) || P(N)), K = HMAC-SHA256(private-keys key,
 *                "vmbak-keyvault-audit v1" NUL ID): written by a command that holds the key
 *                vault's passphrase;
 *   sha256       C(N) = SHA-256("vmbak-keyvault-audit-unauthenticated v1" NUL C(N-1) || P(N)):
 *                written without it (vmbak key add|passwd|remove, a failed unlock).
 *
 * and "mac" holds C(N) in hex. Reading the log back with the passphrase recomputes the chain: a
 * line edited, removed, inserted or moved before the last hmac-sha256 line breaks it (an
 * unauthenticated line is covered by the next authenticated one). Every change of keyvault.json
 * (key create, rotate, state, secret set) appends its line under the key vault's lock and
 * records {"lines": N, "chain": HEX of C(N)} as "audit" in the signed file, so the log cannot
 * lose lines up to there either. What stays undetectable to a holder of the file without the
 * passphrase: removing lines from the end back to the last signed change, and rewriting the
 * lines after the last hmac-sha256 line, or a tail of them as sha256 lines (which reading shows
 * as unauthenticated: only lines up to the last hmac-sha256 line are vouched for).
 *
 * A crash during an append leaves a last line without its newline: reading reports it
 * (-EPIPE), and the next append removes that fragment (it was never a whole line) and logs
 * that it did ("op": "audit-repair").
 *
 * Thread safety: none needed beyond one handle per thread; processes are serialised by the
 * lock. Errors: -EBADMSG a broken chain (message names the line), -EPROTO a line that is not an
 * audit line, -EPIPE (verify) an incomplete last line, else -errno. Messages in
 * vbk_kv_errmsg().
 */
#ifndef VMBAK_AUDIT_H
#define VMBAK_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "kv.h"

#define VBK_AUDIT_FILE "audit.log"
#define VBK_AUDIT_LINE_MAX 4096 /* a longer line is not an audit line */

/* Operations: "unwrap", "restore", "rewrap", "verify-escrow", "key-create", "key-rotate",
 * "key-enable", "key-disable", "key-retire", "secret-set", "vault-key-add",
 * "vault-key-passwd", "vault-key-remove", "audit-repair" (others may be added). */
typedef struct vbk_audit_event {
	const char *op;
	const char *key;    /* KEK name, or NULL */
	uint32_t version;   /* KEK version, 0: none */
	const char *secret; /* secret name, or NULL */
	uint32_t secret_version;
	const char *detail; /* free text without secrets (e.g. "vm1/RP sda: k/1 -> k/2"), or NULL */
	int result;	    /* 0 ok, else the -errno of the failure */
	const char *error;  /* the failure's message, or NULL */
} vbk_audit_event;

/* Appends one event to kv's log: authenticated when kv is unlocked, else a sha256 line. */
int vbk_audit_append(vbk_kv *kv, const vbk_audit_event *e);
/* The same for a caller that has the key vault's path only (opens it without a passphrase;
 * defined in kv.c, which opens key vaults: this file is handed open ones). */
int vbk_audit_append_path(const char *kv_path, const vbk_audit_event *e);

typedef struct vbk_audit_result {
	uint64_t lines;		/* whole lines read */
	uint64_t authenticated; /* lines up to and including the last hmac-sha256 line */
	uint64_t signed_lines;	/* "lines" recorded in keyvault.json, 0 when none */
} vbk_audit_result;

/* Reads and checks kv's whole log (kv unlocked: -ENOKEY otherwise), calling cb (may be NULL)
 * for every line that checks, in order, with the parsed object (valid during the call) and
 * whether it is an hmac-sha256 line (a line is vouched for when it is at most
 * ret->authenticated). A missing log is an empty one. Returns 0, -EBADMSG or
 * -EPROTO at the first bad line (after the good ones were passed to cb), -EPIPE when only the
 * last line is incomplete, -ENODATA when the log ends before the count signed in keyvault.json
 * (truncated), or -errno. *ret is filled in every case. */
int vbk_audit_verify(vbk_kv *kv, void (*cb)(void *arg, uint64_t seq, json_object *line, int hmac),
		     void *arg, vbk_audit_result *ret);

#endif
