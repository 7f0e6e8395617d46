/* kv.c: the key vault handle (kv.h): create, open, unlock with the passphrase (signing a file
 * made before signatures on its first unlock), close. The file itself is kv_file.c, keys
 * kv_keys.c, secrets kv_secrets.c, the signature kv_sign.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "audit.h"
#include "crypto.h"
#include "file.h"
#include "json.h"
#include "kv.h"
#include "kv_internal.h"
#include "util.h"
#include "vaultkey.h"

/* A signed key vault binds " signed" into its master key's associated data too: removing the
 * signature (to have a command with the passphrase sign a changed file as if it were an old
 * unsigned one) makes the passphrase fail instead. */
static void master_aad(const char *id, int is_signed, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s v%d %s%s", VBK_KV_FORMAT_NAME, VBK_KV_FORMAT_VERSION, id,
		 is_signed ? " signed" : "");
}

/* A file made before signatures, at its first unlock: every KEK version's public part and
 * fingerprint must match its private part (sealed under the passphrase, so nobody without it
 * can have added or changed one). Secrets cannot be checked that way (see vmbak-vault(5)). */
static int check_keys_match(const vbk_kv *kv, json_object *root)
{
	json_object *keys = jobj(root, "keys", json_type_object);
	int r = 0;

	json_object_object_foreach(keys, name, k)
	{
		json_object *vs = jobj(k, "versions", json_type_array);
		size_t n = json_object_array_length(vs);

		/* Token keys came after signatures: in an unsigned file, one was added by hand. */
		if (json_object_object_get_ex(k, "pkcs11", NULL)) {
			r = kv_fail(-EBADMSG,
				    "key '%s' in key vault '%s' is in a PKCS#11 token, which an "
				    "unsigned key vault cannot have: the file was changed without "
				    "its passphrase",
				    name, kv->path);
			break;
		}

		for (size_t i = 0; i < n && r == 0; i++) {
			json_object *v = json_object_array_get_idx(vs, i);
			uint8_t *pt = NULL, der[KV_PUBLIC_MAX], *pub = NULL;
			size_t pt_len = 0, der_len = 0, pub_len = 0;
			EVP_PKEY *pk = NULL;
			char fpr[VBK_FPR_MAX];
			kv_kek kek = {0};

			snprintf(kek.name, sizeof(kek.name), "%s", name);
			kek.version = (uint32_t)(i + 1);
			kv_type_from_json(k, &kek.type);
			snprintf(kek.fingerprint, sizeof(kek.fingerprint), "%s",
				 jstr(v, "fingerprint"));
			r = kv_kek_private(kv, &kek, v, &pt, &pt_len);
			if (r == -EUCLEAN) /* sealed with another fingerprint, or damaged */
				r = -EBADMSG;
			else if (r < 0)
				break;
			else if (kek.type == VBK_KEY_AES256) {
				if (pt_len != VBK_KEY_LEN || kv_fingerprint_aes(pt, fpr) < 0 ||
				    strcmp(fpr, kek.fingerprint) != 0)
					r = -EBADMSG;
			} else if (kv_rsa_load(pt, pt_len, 1, kv_key_bits(kek.type), &pk) < 0 ||
				   kv_rsa_public_der(pk, &pub, &pub_len) < 0 ||
				   vbu_base64_decode(jstr(v, "public"), der, sizeof(der),
						     &der_len) < 0 ||
				   der_len != pub_len || memcmp(der, pub, der_len) != 0 ||
				   kv_fingerprint_rsa(der, der_len, fpr) < 0 ||
				   strcmp(fpr, kek.fingerprint) != 0) {
				r = -EBADMSG;
			}
			if (r == -EBADMSG)
				kv_fail(r,
					"key '%s' version %u in key vault '%s' does not match its "
					"private part: the file was changed without its passphrase",
					name, kek.version, kv->path);
			EVP_PKEY_free(pk);
			OPENSSL_free(pub);
			if (pt) {
				vbk_wipe(pt, pt_len);
				free(pt);
			}
		}
		if (r < 0)
			break;
	}
	return r;
}

struct migrate_op {
	const char *pass;
};

static int migrate_fn(vbk_kv *kv, json_object *root, void *arg)
{
	struct migrate_op *op = arg;
	vbk_wrapped_vaultkeys w;
	json_object *o;
	char aad[128];
	int r;

	r = check_keys_match(kv, root);
	if (r < 0)
		return r;
	/* The master key again, now bound to " signed". */
	master_aad(kv->id, 1, aad, sizeof(aad));
	r = vbk_vaultkeys_wrap(&kv->keys, op->pass, aad, strlen(aad), &w);
	if (r < 0)
		return kv_fail(r, "cannot sign key vault '%s': %s", kv->path, vbu_strerror(-r));
	o = json_object_new_object();
	if (jadd(root, "kdf", o) < 0 || jadd(o, "name", json_object_new_string("scrypt")) < 0 ||
	    jadd(o, "n", json_object_new_int64((int64_t)w.kdf.n)) < 0 ||
	    jadd(o, "r", json_object_new_int64(w.kdf.r)) < 0 ||
	    jadd(o, "p", json_object_new_int64(w.kdf.p)) < 0 ||
	    jadd_b64(o, "salt", w.kdf.salt, sizeof(w.kdf.salt)) < 0)
		return kv_fail(-ENOMEM, "out of memory");
	o = json_object_new_object();
	if (jadd(root, "master", o) < 0 || jadd_b64(o, "nonce", w.nonce, sizeof(w.nonce)) < 0 ||
	    jadd_b64(o, "ciphertext", w.ct, sizeof(w.ct)) < 0 ||
	    jadd_b64(o, "tag", w.tag, sizeof(w.tag)) < 0)
		return kv_fail(-ENOMEM, "out of memory");
	return 0;
}

int vbk_kv_signer(const vbk_kv *kv, uint8_t fpr[32], uint64_t *generation)
{
	if (!kv->is_signed)
		return 0;
	if (vbk_sha256(kv->sign_pub, KV_SIGN_PUB_LEN, fpr) < 0)
		return kv_fail(-EIO, "out of memory");
	*generation = kv->generation;
	return 1;
}

int vbk_kv_init(const char *path, const char *pass)
{
	vbk_kv kv = {0};
	vbk_vaultkeys keys = {0};
	vbk_wrapped_vaultkeys w;
	json_object *root = NULL, *o;
	uint8_t u[16];
	char aad[128];
	int r, made_dir = 0;

	kv_clear_err();
	if (!path || !*path || !pass)
		return kv_fail(-EINVAL, "no key vault path or passphrase");
	if (mkdir(path, 0700) == 0) {
		made_dir = 1;
	} else if (errno != EEXIST) {
		return kv_fail(-errno, "cannot create key vault '%s': %s", path,
			       vbu_strerror(errno));
	} else {
		r = vbu_dir_is_empty(path);
		if (r < 0)
			return kv_fail(r, "cannot create key vault '%s': %s", path,
				       vbu_strerror(-r));
		if (r == 0)
			return kv_fail(-EEXIST,
				       "cannot create key vault '%s': directory exists "
				       "and is not empty",
				       path);
		/* An existing empty directory may be open to all: make it what mkdir makes. */
		if (chmod(path, 0700) < 0)
			return kv_fail(-errno, "cannot create key vault '%s': %s", path,
				       vbu_strerror(errno));
	}
	kv.path = (char *)path;
	kv.file = kv_join_path(path, VBK_KV_FILE);
	if (!kv.file) {
		r = kv_fail(-ENOMEM, "cannot create key vault '%s': out of memory", path);
		goto out;
	}
	if ((r = vbk_random(u, sizeof(u))) < 0 || (r = vbk_vaultkeys_generate(&keys)) < 0) {
		r = kv_fail(r, "cannot create key vault '%s': no random bytes", path);
		goto out;
	}
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* a random (version 4) UUID */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	vbu_uuid_format(u, kv.id);
	memcpy(kv.keys.data_key, keys.data_key, VBK_KEY_LEN);
	memcpy(kv.keys.id_key, keys.id_key, VBK_KEY_LEN);
	if ((r = kv_ed25519_generate(kv.sign_seed, kv.sign_pub)) < 0) {
		r = kv_fail(r, "cannot create key vault '%s': no signing key", path);
		goto out;
	}
	master_aad(kv.id, 1, aad, sizeof(aad));
	r = vbk_vaultkeys_wrap(&keys, pass, aad, strlen(aad), &w);
	if (r < 0) {
		r = kv_fail(r, "cannot create key vault '%s': %s", path, vbu_strerror(-r));
		goto out;
	}
	root = json_object_new_object();
	r = -ENOMEM;
	if (!root || jadd(root, "format", json_object_new_string(VBK_KV_FORMAT_NAME)) < 0 ||
	    jadd(root, "version", json_object_new_int(VBK_KV_FORMAT_VERSION)) < 0 ||
	    jadd(root, "id", json_object_new_string(kv.id)) < 0 ||
	    jadd(root, "created", json_object_new_int64(vbu_now_ns() / 1000000000)) < 0)
		goto nomem;
	o = json_object_new_object();
	if (jadd(root, "kdf", o) < 0 || jadd(o, "name", json_object_new_string("scrypt")) < 0 ||
	    jadd(o, "n", json_object_new_int64((int64_t)w.kdf.n)) < 0 ||
	    jadd(o, "r", json_object_new_int64(w.kdf.r)) < 0 ||
	    jadd(o, "p", json_object_new_int64(w.kdf.p)) < 0 ||
	    jadd_b64(o, "salt", w.kdf.salt, sizeof(w.kdf.salt)) < 0)
		goto nomem;
	o = json_object_new_object();
	if (jadd(root, "master", o) < 0 || jadd_b64(o, "nonce", w.nonce, sizeof(w.nonce)) < 0 ||
	    jadd_b64(o, "ciphertext", w.ct, sizeof(w.ct)) < 0 ||
	    jadd_b64(o, "tag", w.tag, sizeof(w.tag)) < 0 ||
	    jadd(root, "keys", json_object_new_object()) < 0 ||
	    jadd(root, "secrets", json_object_new_object()) < 0)
		goto nomem;
	r = kv_sign_root(&kv, root, 1);
	if (r < 0) {
		r = kv_fail(r, "cannot create key vault '%s': cannot sign it", path);
		goto out;
	}
	r = kv_write(&kv, root);
	goto out;
nomem:
	r = kv_fail(-ENOMEM, "cannot create key vault '%s': out of memory", path);
out:
	if (r < 0 && made_dir) {
		if (kv.file)
			unlink(kv.file);
		rmdir(path);
	}
	vbk_vaultkeys_wipe(&keys);
	vbk_vaultkeys_wipe(&kv.keys);
	vbk_wipe(kv.sign_seed, sizeof(kv.sign_seed));
	json_object_put(root);
	free(kv.file);
	return r;
}

int vbk_kv_open(const char *path, vbk_kv **ret)
{
	kv_sig sig;
	vbk_kv *kv;
	int r;

	kv_clear_err();
	kv = vbk_secure_alloc(sizeof(*kv)); /* holds the key vault's keys (kv->keys) */
	if (!kv)
		return kv_fail(-ENOMEM, "cannot open key vault '%s': out of memory", path);
	kv->path = strdup(path);
	kv->file = kv_join_path(path, VBK_KV_FILE);
	if (!kv->path || !kv->file) {
		r = kv_fail(-ENOMEM, "cannot open key vault '%s': out of memory", path);
		goto out;
	}
	r = kv_read(kv->path, kv->file, &kv->root, kv->id, NULL, &sig);
	if (r < 0)
		goto out;
	kv->is_signed = sig.is_signed;
	memcpy(kv->sign_pub, sig.pub, sizeof(sig.pub));
	kv->generation = sig.generation;
	*ret = kv;
	kv = NULL;
out:
	vbk_kv_close(kv);
	return r;
}

int vbk_kv_unlock(vbk_kv *kv, const char *pass)
{
	vbk_wrapped_vaultkeys w;
	struct migrate_op op = {.pass = pass};
	json_object *root = NULL;
	char id[VBK_KV_ID_LEN + 1], aad[128];
	kv_sig sig;
	int r;

	kv_clear_err();
	r = kv_read(kv->path, kv->file, &root, id, &w, &sig);
	if (r < 0)
		return r;
	if (strcmp(id, kv->id) != 0) {
		r = kv_fail(-ESTALE, "key vault '%s' was replaced while in use", kv->path);
		goto out;
	}
	if (kv->is_signed &&
	    (!sig.is_signed || CRYPTO_memcmp(sig.pub, kv->sign_pub, KV_SIGN_PUB_LEN) != 0)) {
		r = kv_fail(-EBADMSG, "key vault '%s' was replaced while in use", kv->path);
		goto out;
	}
	master_aad(kv->id, sig.is_signed, aad, sizeof(aad));
	r = vbk_vaultkeys_unwrap(&w, pass, aad, strlen(aad), &kv->keys);
	if (r == -ENOKEY && !sig.is_signed) {
		/* An unsigned file whose master key was bound to a signature: stripped. */
		master_aad(kv->id, 1, aad, sizeof(aad));
		if (vbk_vaultkeys_unwrap(&w, pass, aad, strlen(aad), &kv->keys) == 0) {
			vbk_vaultkeys_wipe(&kv->keys);
			r = kv_fail(-EBADMSG,
				    "key vault file '%s' has lost its signature: it was changed "
				    "without the key vault's passphrase",
				    kv->file);
			goto out;
		}
	}
	if (r == -ENOKEY) {
		r = kv_fail(r, "wrong passphrase for key vault '%s'", kv->path);
		goto out;
	}
	if (r < 0) {
		r = kv_fail(r, "cannot unlock key vault '%s': %s", kv->path, vbu_strerror(-r));
		goto out;
	}
	json_object_put(kv->root);
	kv->root = root;
	root = NULL;
	kv->is_signed = sig.is_signed;
	kv->generation = sig.generation;
	if (sig.is_signed) {
		/* The signing key is the owner's only if its private half opens under the
		 * passphrase: then the signature checked on reading covers everything else. */
		r = kv_signing_open(kv, kv->root, sig.pub);
		if (r < 0) {
			vbk_vaultkeys_wipe(&kv->keys);
			r = kv_fail(-EBADMSG,
				    "key vault file '%s' does not verify: it was signed by another "
				    "key than its own, without the key vault's passphrase",
				    kv->file);
			goto out;
		}
		kv->unlocked = 1;
		r = 0;
		goto out;
	}
	/* Made before signatures: check what can be checked, then sign it (vmbak-vault(5)). */
	kv->unlocked = 1;
	r = kv_ed25519_generate(kv->sign_seed, kv->sign_pub);
	if (r == 0) {
		kv->can_sign = 1;
		r = kv_mutate(kv, migrate_fn, &op);
	}
	if (r < 0) {
		if (!*vbk_kv_errmsg())
			kv_fail(r, "cannot sign key vault '%s': %s", kv->path, vbu_strerror(-r));
		kv->unlocked = 0;
		kv->can_sign = 0;
		vbk_vaultkeys_wipe(&kv->keys);
		vbk_wipe(kv->sign_seed, sizeof(kv->sign_seed));
	}
out:
	json_object_put(root);
	return r;
}

/* Here, not in audit.c: the log is a lower unit that is handed an open key vault (kv_file.c
 * writes through it), and opening one is this file's. */
int vbk_audit_append_path(const char *kv_path, const vbk_audit_event *e)
{
	vbk_kv *kv = NULL;
	int r;

	r = vbk_kv_open(kv_path, &kv);
	if (r == 0)
		r = vbk_audit_append(kv, e);
	vbk_kv_close(kv);
	return r;
}

int vbk_kv_unlocked(const vbk_kv *kv)
{
	return kv && kv->unlocked;
}

void vbk_kv_close(vbk_kv *kv)
{
	if (!kv)
		return;
	vbk_vaultkeys_wipe(&kv->keys);
	vbk_wipe(kv->sign_seed, sizeof(kv->sign_seed));
	json_object_put(kv->root);
	free(kv->path);
	free(kv->file);
	vbk_secure_free(kv, sizeof(*kv));
}

const char *vbk_kv_path(const vbk_kv *kv)
{
	return kv->path;
}

const char *vbk_kv_id(const vbk_kv *kv)
{
	return kv->id;
}
