/* json.c: json-c set-up and field getters (see json.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

void vbu_json_seed(void)
{
	json_object *o;
	int saved = dup(STDERR_FILENO), nul = open("/dev/null", O_WRONLY | O_CLOEXEC);

	/* json-c seeds its string hash on first use from getrandom() and, when that fails,
	 * prints a line of its own on stderr (then falls back to other sources). Seeded here,
	 * once, with stderr pointed away: no message of a library ever reaches the user. */
	if (saved >= 0 && nul >= 0)
		dup2(nul, STDERR_FILENO);
	o = json_tokener_parse("{\"seed\": 0}");
	json_object_put(o);
	if (saved >= 0 && nul >= 0)
		dup2(saved, STDERR_FILENO);
	if (saved >= 0)
		close(saved);
	if (nul >= 0)
		close(nul);
}

const char *vbu_json_str(json_object *o, const char *key)
{
	json_object *j;

	if (!json_object_object_get_ex(o, key, &j) || !json_object_is_type(j, json_type_string))
		return NULL;
	return json_object_get_string(j);
}

int vbu_json_copy_str(json_object *o, const char *key, char *buf, size_t cap)
{
	json_object *j;
	const char *s;
	size_t len;

	if (!json_object_object_get_ex(o, key, &j) || !json_object_is_type(j, json_type_string))
		return -EPROTO;
	s = json_object_get_string(j);
	len = (size_t)json_object_get_string_len(j);
	if (len >= cap || memchr(s, '\0', len))
		return -EPROTO;
	memcpy(buf, s, len + 1);
	return 0;
}

int vbu_json_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret)
{
	json_object *j;
	int64_t v;

	if (!json_object_object_get_ex(o, key, &j) || !json_object_is_type(j, json_type_int))
		return -EPROTO;
	errno = 0;
	v = json_object_get_int64(j);
	if (errno || v < min || v > max)
		return -EPROTO;
	*ret = v;
	return 0;
}

int vbu_json_u64(json_object *o, const char *key, uint64_t *ret)
{
	int64_t v;
	int r = vbu_json_int(o, key, 0, INT64_MAX, &v);

	if (r == 0)
		*ret = (uint64_t)v;
	return r;
}

json_object *vbu_json_obj(json_object *o, const char *key, json_type t)
{
	json_object *j;

	if (!json_object_object_get_ex(o, key, &j) || !json_object_is_type(j, t))
		return NULL;
	return j;
}

int vbu_json_add(json_object *o, const char *key, json_object *v)
{
	if (!v || json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

int vbu_json_b64(json_object *o, const char *key, uint8_t *out, size_t len)
{
	const char *s = vbu_json_str(o, key);
	size_t got = 0;

	if (!s || vbu_base64_decode(s, out, len, &got) < 0 || got != len)
		return -EPROTO;
	return 0;
}

int vbu_json_add_b64(json_object *o, const char *key, const uint8_t *p, size_t n)
{
	char *s = vbu_base64_encode(p, n);
	int r;

	if (!s)
		return -ENOMEM;
	r = vbu_json_add(o, key, json_object_new_string(s));
	free(s);
	return r;
}
