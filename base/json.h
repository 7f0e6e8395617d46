/* json.h: json-c set-up and the getters every parser of ours uses.
 *
 * Part of base/: includes nothing of ours. The getters never trust what they read: a field
 * that is absent or has another type is an error, never a default. Every function is
 * thread-safe on distinct objects.
 */
#ifndef VMBAK_JSON_H
#define VMBAK_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* Seeds json-c's string hash once, at program start (single-threaded): json-c would print a
 * line of its own on stderr if getrandom() failed at its first use. */
void vbu_json_seed(void);

/* The string field key of o, or NULL when absent or not a string. The string belongs to o. */
const char *vbu_json_str(json_object *o, const char *key);

/* Copies the string field key of o into buf (cap bytes with the NUL). -EPROTO when absent, not
 * a string, holding a NUL, or cap bytes or longer. buf is written only on success. */
int vbu_json_copy_str(json_object *o, const char *key, char *buf, size_t cap);

/* The integer field key of o, in [min, max]. -EPROTO when absent, not an integer, out of
 * range, or too large for json-c's int64. */
int vbu_json_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret);

/* The integer field key of o, in [0, INT64_MAX]; the same errors. */
int vbu_json_u64(json_object *o, const char *key, uint64_t *ret);

/* The field key of o when it has type t, else NULL. It belongs to o. */
json_object *vbu_json_obj(json_object *o, const char *key, json_type t);

/* The string field key of o, base64 (util.h) of exactly len bytes, decoded into out. -EPROTO
 * when absent, not a string, malformed or of another length; out may be written then. */
int vbu_json_b64(json_object *o, const char *key, uint8_t *out, size_t len);

/* Adds the base64 of p (n bytes) to o as the string field key. -ENOMEM. */
int vbu_json_add_b64(json_object *o, const char *key, const uint8_t *p, size_t n);

/* Adds v to o as key; takes v in every case (freed on failure). -ENOMEM when v is NULL (a
 * failed json_object_new_*) or the add fails. */
int vbu_json_add(json_object *o, const char *key, json_object *v);

#endif
