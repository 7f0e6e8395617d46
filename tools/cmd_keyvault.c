/* cmd_keyvault.c: vmbak keyvault, the key vault's commands, and the escrow glue of ingest.
 *
 * Subcommands: init; key create, rotate, list; secret set, list; unwrap; restore. The key
 * vault's passphrase comes from --passphrase-file, VMBAK_KEYVAULT_PASSPHRASE_FILE,
 * VMBAK_KEYVAULT_PASSPHRASE or the terminal, and is asked only by what needs it: creating and
 * rotating keys, setting a secret without a KEK or with an AES KEK, unwrap and restore. Nothing
 * is written before everything that can fail has been checked: unwrap writes its output only
 * once the blob has verified.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "common.h"
#include "escrow.h"
#include "escrow_tools.h"
#include "hdrcheck.h"
#include "kvpin.h"
#include "kv.h"
#include "passphrase.h"
#include "pkcs11.h"
#include "seckind.h"
#include "file.h"
#include "util.h"

#define KV_SYNOPSIS                                                                                \
	"vmbak keyvault init KV\n"                                                                 \
	"       vmbak keyvault key create KV NAME [--type rsa-3072|rsa-4096|aes-256]\n"            \
	"                                 [--pkcs11 URI]\n"                                        \
	"       vmbak keyvault key rotate KV NAME\n"                                               \
	"       vmbak keyvault key list KV [--json] [--vault VAULT ...]\n"                         \
	"       vmbak keyvault key disable|enable|retire KV NAME/VERSION [--vault VAULT ...]\n"    \
	"       vmbak keyvault secret set KV NAME --value-file F [--kek KEYNAME]\n"                \
	"       vmbak keyvault secret list KV [--json]\n"                                          \
	"       vmbak keyvault unwrap KV BLOB [--output F]\n"                                      \
	"       vmbak keyvault restore KV BLOB\n"                                                  \
	"       vmbak keyvault verify KV\n"                                                        \
	"       vmbak keyvault audit KV [--json]\n"

static const char keyvault_help[] =
    "usage: " KV_SYNOPSIS "\n"
    "Manages a key vault KV (a directory): key-encryption keys (KEKs) and secrets such as\n"
    "the passphrases of encrypted guest disks, both versioned. `vmbak ingest --keyvault KV\n"
    "--escrow DISK=SECRET` keeps a copy of a disk's secret, wrapped by its KEK, with every\n"
    "recovery point; `unwrap` gets it back from the point's DISK.key file.\n"
    "\n"
    "commands:\n"
    "  init KV                 create a key vault (asks for a new passphrase)\n"
    "  key create KV NAME      create a KEK (version 1); --type rsa-3072 (default),\n"
    "                          rsa-4096 or aes-256\n"
    "                          with --pkcs11 URI, inside a PKCS#11 token (HSM)\n"
    "  key rotate KV NAME      add a version to a KEK; old versions stay usable (a KEK in\n"
    "                          a token gets a new key there)\n"
    "  key list KV             KEKs: versions, type, created, fingerprint, state; with\n"
    "                          --vault, how many escrow blobs in those vaults use each\n"
    "  key disable KV NAME/VERSION  the version wraps nothing new (unwrap still works)\n"
    "  key enable KV NAME/VERSION   the version wraps and unwraps again\n"
    "  key retire KV NAME/VERSION   the version is used for nothing; refused while an\n"
    "                          escrow blob in a --vault VAULT, or the latest version of a\n"
    "                          secret, still uses it (rewrap first: vmbak rewrap)\n"
    "  secret set KV NAME      add a version of a secret, from --value-file F (its bytes\n"
    "                          exactly), wrapped by the current version of --kek KEYNAME,\n"
    "                          else encrypted under the key vault's own key\n"
    "  secret list KV          secrets and their versions (never their values)\n"
    "  unwrap KV BLOB          write the secret escrowed in BLOB (a DISK.key file) to\n"
    "                          standard output, or to --output F (created mode 0600)\n"
    "  restore KV BLOB         put the secret escrowed in BLOB back into KV as a new version\n"
    "  verify KV               check the key vault's signature under its passphrase, and\n"
    "                          sign a key vault made before signatures\n"
    "  audit KV                print the audit log and check its chain (needs the\n"
    "                          passphrase); exit 3 when a line was changed or removed\n"
    "\n"
    "options:\n"
    "  --type TYPE             key type: rsa-3072, rsa-4096, aes-256 (weaker ones refused)\n"
    "  --pkcs11 URI            key create: make the KEK in the PKCS#11 token that the RFC 7512\n"
    "                          URI names, e.g. 'pkcs11:token=hsm;object=kek?module-name=M'\n"
    "                          (module: registered with p11-kit, or allowed by\n"
    "                          VMBAK_PKCS11_MODULE=PATH); its private key never leaves the\n"
    "                          token. PIN: VMBAK_PKCS11_PIN_FILE, VMBAK_PKCS11_PIN, terminal\n"
    "  --value-file F          the secret's value: the whole content of F\n"
    "  --kek KEYNAME           wrap the secret with the current version of this KEK\n"
    "  --output F              unwrap: write the secret to F (mode 0600) instead of stdout\n"
    "  --json                  list, audit: print one JSON array\n"
    "  --vault VAULT           key list, retire: a vault whose escrow blobs to count (may\n"
    "                          be given several times; each opened with the vault\n"
    "                          passphrase: vmbak --passphrase-file F, VMBAK_PASSPHRASE_FILE,\n"
    "                          VMBAK_PASSPHRASE or the terminal)\n"
    "  --passphrase-file F     read the key vault passphrase from the first line of F\n"
    "  -h, --help              show this help\n"
    "\n"
    "Every command that changes the key vault (init, key create and rotate, secret set,\n"
    "restore), and unwrap and verify, asks for the passphrase and checks the key vault's\n"
    "signature with it; the list commands read the public part only. Sources, in order:\n"
    "--passphrase-file, VMBAK_KEYVAULT_PASSPHRASE_FILE, VMBAK_KEYVAULT_PASSPHRASE, the\n"
    "terminal. Names of keys and secrets: " VBK_KV_NAME_RULE ".\n"
    "A KEK in a PKCS#11 token also needs the token's PIN to unwrap, to be made or rotated,\n"
    "and, for AES (which wraps inside the token), to wrap: at secret set and at ingest.\n"
    "See vmbak-keyvault(1).\n";

enum {
	O_PASSFILE = 1 << 0,
	O_TYPE = 1 << 1,
	O_JSON = 1 << 2,
	O_VALUE = 1 << 3,
	O_KEK = 1 << 4,
	O_OUTPUT = 1 << 5,
	O_VAULT = 1 << 6,
	O_PKCS11 = 1 << 12, /* apart from the bits other options take */
};

typedef struct kvargs {
	const char *kv, *name, *blob;
	const char *passfile, *type, *value_file, *kek, *output, *pkcs11;
	int json;
	const char **vaults; /* --vault, nvaults of them */
	size_t nvaults;
	const vmbak_globals *g;
} kvargs;

typedef struct kvsub {
	const char *name;  /* "key create" */
	const char *usage; /* one line */
	const char *const *args;
	int nargs;
	unsigned opts;
	int (*run)(const kvargs *a);
} kvsub;

/* ---- shared pieces ---- */

/* A keyvault/ failure: its message, else the context and the errno text. */
static int kv_passphrase(const char *path, const char *file, int confirm, char **ret)
{
	vbk_passphrase_source src = {
	    .file = file,
	    .env_file = "VMBAK_KEYVAULT_PASSPHRASE_FILE",
	    .env_value = "VMBAK_KEYVAULT_PASSPHRASE",
	    .prompt = confirm ? "new key vault passphrase: " : "key vault passphrase: ",
	    .confirm = confirm,
	};

	return passphrase_get(&src, "key vault", path, ret);
}

static int check_kv_name(const char *what, const char *name)
{
	if (!*name)
		return usage_err("empty %s name: use " VBK_KV_NAME_RULE, what);
	if (!vbu_name_valid(name))
		return usage_err("invalid %s name '%s': use " VBK_KV_NAME_RULE, what, q(name));
	return 0;
}

static const char *time_text(int64_t t, char buf[21])
{
	vbu_format_time(t, buf);
	return buf;
}

/* ---- init ---- */

static int run_init(const kvargs *a)
{
	vbk_kv *kv = NULL;
	char *pass = NULL;
	int r, status;

	status = kv_passphrase(a->kv, a->passfile, 1, &pass);
	if (status != 0)
		return status;
	r = vbk_kv_init(a->kv, pass);
	vbk_passphrase_free(pass);
	if (r < 0)
		return kv_err(r, "cannot create key vault");
	r = vbk_kv_open(a->kv, &kv);
	if (r < 0)
		return kv_err(r, "cannot open key vault");
	printf("key vault '%s' created, id %s\n", a->kv, vbk_kv_id(kv));
	vbk_kv_close(kv);
	return VMBAK_EXIT_OK;
}

/* ---- keys ---- */

static void print_key_version(const vbk_kv *kv, const char *name, uint32_t version)
{
	vbk_key_info *keys = NULL;
	size_t n = 0;

	if (vbk_kv_keys(kv, &keys, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].name, name) == 0 && version <= keys[i].n_versions) {
			printf("key '%s' version %u (%s), fingerprint %s\n", name, version,
			       vbk_key_type_name(keys[i].type),
			       keys[i].versions[version - 1].fingerprint);
			if (keys[i].versions[version - 1].pkcs11[0])
				printf("in PKCS#11 token: %s\n",
				       keys[i].versions[version - 1].pkcs11);
		}
	vbk_key_list_free(keys, n);
}

static int parse_type(const char *s, vbk_key_type *ret)
{
	int r = vbk_key_type_parse(s, ret);

	if (r == -EPERM)
		return usage_err("key type '%s' is too weak: use " VBK_KEY_TYPES, q(s));
	if (r < 0)
		return usage_err("unknown key type '%s': use " VBK_KEY_TYPES, q(s));
	return 0;
}

static int run_key_create(const kvargs *a)
{
	vbk_key_type t = VBK_KEY_RSA3072;
	vbk_kv *kv = NULL;
	uint32_t v = 0;
	int r, status;

	if (a->type && (status = parse_type(a->type, &t)) != 0)
		return status;
	if ((status = check_kv_name("key", a->name)) != 0)
		return status;
	/* A bad URI is refused before any passphrase is asked. */
	if (a->pkcs11 && vbk_p11_uri_check(a->pkcs11, 0) < 0)
		return usage_err("%s", vbk_kv_errmsg());
	if ((status = escrow_kv_open(a->kv, 1, a->passfile, &kv)) != 0)
		return status;
	r = a->pkcs11 ? vbk_kv_key_create_p11(kv, a->name, t, a->pkcs11, &v)
		      : vbk_kv_key_create(kv, a->name, t, &v);
	if (r < 0)
		status = kv_err(r, "cannot create key");
	else
		print_key_version(kv, a->name, v);
	vbk_kv_close(kv);
	return status;
}

static int run_key_rotate(const kvargs *a)
{
	vbk_kv *kv = NULL;
	uint32_t v = 0;
	int r, status;

	if ((status = check_kv_name("key", a->name)) != 0)
		return status;
	if ((status = escrow_kv_open(a->kv, 1, a->passfile, &kv)) != 0)
		return status;
	r = vbk_kv_key_rotate(kv, a->name, &v);
	if (r < 0)
		status = kv_err(r, "cannot rotate key");
	else
		print_key_version(kv, a->name, v);
	vbk_kv_close(kv);
	return status;
}

/* "current" for the newest version while enabled (as before states), else its state. */
static const char *state_text(const vbk_key_info *k, size_t j)
{
	if (k->versions[j].state == VBK_KEY_ENABLED && j + 1 == k->n_versions)
		return "current";
	return vbk_key_state_name(k->versions[j].state);
}

/* Blobs counted by --vault that use version v of key name (0 when none). */
static uint64_t uses_of(const escrow_use *u, size_t n, const char *name, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (u[i].version == v && strcmp(u[i].kek, name) == 0)
			return u[i].blobs;
	return 0;
}

static json_object *key_json(const vbk_key_info *k, const escrow_use *u, size_t nu, int counted)
{
	json_object *o = json_object_new_object(), *vs = json_object_new_array();

	if (!o || !vs) {
		json_object_put(o);
		json_object_put(vs);
		return NULL;
	}
	json_object_object_add(o, "name", json_object_new_string(k->name));
	json_object_object_add(o, "type", json_object_new_string(vbk_key_type_name(k->type)));
	json_object_object_add(o, "created", json_time(k->created));
	json_object_object_add(o, "current", json_u64(k->n_versions));
	for (size_t j = 0; j < k->n_versions; j++) {
		json_object *v = json_object_new_object();

		if (!v)
			continue;
		json_object_object_add(v, "version", json_u64(k->versions[j].version));
		json_object_object_add(v, "created", json_time(k->versions[j].created));
		json_object_object_add(v, "fingerprint",
				       json_object_new_string(k->versions[j].fingerprint));
		if (k->versions[j].pkcs11[0])
			json_object_object_add(v, "pkcs11",
					       json_object_new_string(k->versions[j].pkcs11));
		json_object_object_add(v, "state", json_object_new_string(state_text(k, j)));
		if (counted)
			json_object_object_add(
			    v, "blobs", json_u64(uses_of(u, nu, k->name, k->versions[j].version)));
		json_object_array_add(vs, v);
	}
	json_object_object_add(o, "versions", vs);
	return o;
}

static int run_key_list(const kvargs *a)
{
	vbk_key_info *keys = NULL;
	escrow_use *uses = NULL;
	vbk_kv *kv = NULL;
	size_t n = 0, i, j, nu = 0;
	char t[21];
	int r, status;

	if ((status = escrow_kv_open(a->kv, 0, NULL, &kv)) != 0)
		return status;
	for (i = 0; i < a->nvaults; i++)
		if ((status = escrow_uses(a->vaults[i], a->g, vbk_kv_id(kv), &uses, &nu)) != 0)
			goto out;
	r = vbk_kv_keys(kv, &keys, &n);
	if (r < 0) {
		status = kv_err(r, "cannot list keys");
		goto out;
	}
	if (a->json) {
		json_object *arr = json_object_new_array();

		for (i = 0; arr && i < n; i++)
			json_object_array_add(arr, key_json(&keys[i], uses, nu, a->nvaults > 0));
		if (!arr) {
			status = kv_err(-ENOMEM, "cannot list keys");
			goto out;
		}
		status = json_print(arr);
		goto out;
	}
	if (n > 0)
		printf("%-20s %-9s %7s  %-20s  %-8s  %s%s\n", "NAME", "TYPE", "VERSION", "CREATED",
		       "STATE", a->nvaults ? "BLOBS  " : "", "FINGERPRINT");
	for (i = 0; i < n; i++) {
		for (j = 0; j < keys[i].n_versions; j++) {
			char b[24] = "";

			if (a->nvaults)
				snprintf(b, sizeof(b), "%5llu  ",
					 (unsigned long long)uses_of(uses, nu, keys[i].name,
								     keys[i].versions[j].version));
			printf("%-20s %-9s %7u  %-20s  %-8s  %s%s\n", keys[i].name,
			       vbk_key_type_name(keys[i].type), keys[i].versions[j].version,
			       time_text(keys[i].versions[j].created, t), state_text(&keys[i], j),
			       b, keys[i].versions[j].fingerprint);
		}
	}
	status = VMBAK_EXIT_OK;
out:
	free(uses);
	vbk_key_list_free(keys, n);
	vbk_kv_close(kv);
	return status;
}

/* ---- secrets ---- */

static int read_value_file(const char *path, char **ret, size_t *ret_len)
{
	int r = vbu_read_file(path, VBK_SECRET_MAX, ret, ret_len);

	if (r == -EFBIG) {
		vbu_err("value file '%s' is larger than %u bytes", q(path), VBK_SECRET_MAX);
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0) {
		vbu_errno(r, "cannot read value file '%s'", q(path));
		return VMBAK_EXIT_FAIL;
	}
	if (*ret_len == 0) {
		free(*ret);
		*ret = NULL;
		vbu_err("value file '%s' is empty", q(path));
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

static void wipe_free(char *p, size_t len)
{
	if (!p)
		return;
	vbk_secret_free((uint8_t *)p, len + 1);
}

static int run_secret_set(const kvargs *a)
{
	vbk_kv *kv = NULL;
	char *val = NULL;
	size_t len = 0;
	uint32_t v = 0, kv_ver = 0;
	int r, status;

	if (!a->value_file)
		return usage_err("no value: use --value-file F (see 'vmbak keyvault --help')");
	if ((status = check_kv_name("secret", a->name)) != 0 ||
	    (a->kek && (status = check_kv_name("key", a->kek)) != 0))
		return status;
	/* Always the passphrase, also for an RSA KEK: every change is signed under it, and only
	 * with it is the KEK's public key known to be the owner's. */
	if ((status = escrow_kv_open(a->kv, 1, a->passfile, &kv)) != 0)
		return status;
	status = read_value_file(a->value_file, &val, &len);
	if (status != 0)
		goto out;
	r = vbk_kv_secret_set(kv, a->name, val, len, a->kek, &v, &kv_ver);
	if (r < 0) {
		status = kv_err(r, "cannot set secret");
		goto out;
	}
	if (a->kek)
		printf("secret '%s' version %u, wrapped by key '%s' version %u\n", a->name, v,
		       a->kek, kv_ver);
	else
		printf("secret '%s' version %u, encrypted under the key vault's own key\n", a->name,
		       v);
	status = VMBAK_EXIT_OK;
out:
	wipe_free(val, len);
	vbk_kv_close(kv);
	return status;
}

static int run_secret_list(const kvargs *a)
{
	vbk_secret_info *secrets = NULL;
	vbk_kv *kv = NULL;
	size_t n = 0, i, j;
	char t[21], kek[VBK_KV_NAME_MAX + 16];
	int r, status;

	if ((status = escrow_kv_open(a->kv, 0, NULL, &kv)) != 0)
		return status;
	r = vbk_kv_secrets(kv, &secrets, &n);
	if (r < 0) {
		status = kv_err(r, "cannot list secrets");
		goto out;
	}
	if (a->json) {
		json_object *arr = json_object_new_array();

		for (i = 0; arr && i < n; i++) {
			json_object *o = json_object_new_object(), *vs = json_object_new_array();

			if (!o || !vs) {
				json_object_put(o);
				json_object_put(vs);
				continue;
			}
			json_object_object_add(o, "name", json_object_new_string(secrets[i].name));
			json_object_object_add(o, "current", json_u64(secrets[i].n_versions));
			for (j = 0; j < secrets[i].n_versions; j++) {
				const vbk_secret_version *sv = &secrets[i].versions[j];
				json_object *v = json_object_new_object(), *k = NULL;

				if (!v)
					continue;
				json_object_object_add(v, "version", json_u64(sv->version));
				json_object_object_add(v, "created", json_time(sv->created));
				if (sv->kek[0]) {
					k = json_object_new_object();
					json_object_object_add(k, "name",
							       json_object_new_string(sv->kek));
					json_object_object_add(k, "version",
							       json_u64(sv->kek_version));
				}
				json_object_object_add(v, "kek", k);
				json_object_object_add(v, "algorithm",
						       json_object_new_string(sv->algorithm));
				json_object_array_add(vs, v);
			}
			json_object_object_add(o, "versions", vs);
			json_object_array_add(arr, o);
		}
		if (!arr) {
			status = kv_err(-ENOMEM, "cannot list secrets");
			goto out;
		}
		status = json_print(arr);
		goto out;
	}
	if (n > 0)
		printf("%-20s %7s  %-20s  %-24s  %s\n", "NAME", "VERSION", "CREATED", "KEK",
		       "ALGORITHM");
	for (i = 0; i < n; i++) {
		for (j = 0; j < secrets[i].n_versions; j++) {
			const vbk_secret_version *sv = &secrets[i].versions[j];

			if (sv->kek[0])
				snprintf(kek, sizeof(kek), "%s v%u", sv->kek, sv->kek_version);
			else
				snprintf(kek, sizeof(kek), "-");
			printf("%-20s %7u  %-20s  %-24s  %s\n", secrets[i].name, sv->version,
			       time_text(sv->created, t), kek, sv->algorithm);
		}
	}
	status = VMBAK_EXIT_OK;
out:
	vbk_secret_list_free(secrets, n);
	vbk_kv_close(kv);
	return status;
}

/* ---- verify ---- */

static int run_verify(const kvargs *a)
{
	vbk_kv *kv = NULL;
	uint8_t fpr[32];
	uint64_t gen = 0;
	char hex[65];
	int status;

	/* Unlocking checks the signature and that its key is the owner's (and signs a key vault
	 * made before signatures). */
	if ((status = escrow_kv_open(a->kv, 1, a->passfile, &kv)) != 0)
		return status;
	if (vbk_kv_signer(kv, fpr, &gen) != 1) {
		vbu_err("key vault '%s' is not signed", q(a->kv));
		vbk_kv_close(kv);
		return VMBAK_EXIT_FAIL;
	}
	vbu_hex_encode(fpr, sizeof(fpr), hex);
	printf("key vault '%s' (id %s) verifies: generation %llu, signing key sha256:%s\n", a->kv,
	       vbk_kv_id(kv), (unsigned long long)gen, hex);
	vbk_kv_close(kv);
	return VMBAK_EXIT_OK;
}

/* ---- unwrap and restore ---- */

/* Reads and checks BLOB against KV before any passphrase is asked; then unlocks and unwraps. */
static int unwrap_blob(const kvargs *a, vbk_kv **ret_kv, vbk_escrow_info *ret_info, uint8_t **ret,
		       size_t *ret_len, int *ret_attempted)
{
	vbk_escrow_info info;
	vbk_kv *kv = NULL;
	char *blob = NULL;
	size_t blen = 0;
	int r, status;

	r = vbu_read_file(a->blob, VBK_ESCROW_MAX, &blob, &blen);
	if (r == -EFBIG) {
		vbu_err("'%s' is not an escrow blob (larger than %u bytes)", q(a->blob),
			VBK_ESCROW_MAX);
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0) {
		vbu_errno(r, "cannot read escrow blob '%s'", q(a->blob));
		return VMBAK_EXIT_FAIL;
	}
	r = vbk_escrow_parse(blob, blen, &info);
	if (r < 0) {
		if (r == -EPROTONOSUPPORT)
			status = kv_err(r, "cannot read escrow blob");
		else
			vbu_err("'%s' is not an escrow blob%s", q(a->blob),
				r == -EPROTO && strstr(vbk_kv_errmsg(), "malformed")
				    ? " (malformed or altered)"
				    : "");
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if ((status = escrow_kv_open(a->kv, 0, NULL, &kv)) != 0)
		goto out;
	if (strcmp(info.keyvault, vbk_kv_id(kv)) != 0) {
		vbu_err("escrow blob '%s' belongs to key vault %s, not to '%s' (%s)", q(a->blob),
			info.keyvault, q(a->kv), vbk_kv_id(kv));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	vbk_kv_close(kv);
	kv = NULL;
	/* From here on it is an attempt to unwrap a blob of this key vault: audited. */
	*ret_attempted = 1;
	if ((status = escrow_kv_open(a->kv, 1, a->passfile, &kv)) != 0)
		goto out;
	r = vbk_escrow_unwrap(kv, blob, blen, ret_info, ret, ret_len);
	if (r < 0) {
		/* -EBADMSG only when the blob is at fault; a damaged key vault says so itself. */
		if (r == -EBADMSG)
			vbu_err("escrow blob '%s' does not verify: it was altered or damaged",
				q(a->blob));
		else
			kv_err(r, "cannot unwrap escrow blob");
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	*ret_kv = kv;
	kv = NULL;
	status = 0;
out:
	vbk_kv_close(kv);
	free(blob);
	return status;
}

/* Logs an unwrap (op "unwrap" or "restore") in the key vault's audit log: kv when it is open,
 * else by path (a failed unlock: an unauthenticated line). Not when the blob was refused before
 * any attempt (not an escrow blob, of another key vault): bad input changes nothing. */
static void audit_unwrap(const kvargs *a, vbk_kv *kv, const char *op, const vbk_escrow_info *info,
			 int status, int attempted)
{
	vbk_audit_event ev = {.op = op, .detail = NULL, .result = status ? -EPERM : 0};
	char detail[600];
	int r;

	if (!attempted)
		return;
	if (info) {
		snprintf(detail, sizeof(detail), "blob of %s/%s disk %s", info->vm, info->rp,
			 info->disk);
		ev.key = info->kek[0] ? info->kek : NULL;
		ev.version = info->kek_version;
		ev.secret = info->secret;
		ev.secret_version = info->secret_version;
	} else {
		snprintf(detail, sizeof(detail), "blob '%s'", a->blob);
	}
	ev.detail = detail;
	if (status)
		ev.error = "refused or failed (see the command's message)";
	r = kv ? vbk_audit_append(kv, &ev) : vbk_audit_append_path(a->kv, &ev);
	if (r < 0 && !status)
		vbu_err("warning: %s", q(vbk_kv_errmsg()));
}

/* --output F: refused when F exists and is not a regular file. Prints the line. */
static int check_output(const char *path)
{
	int r = vbu_target_regular(path);

	if (r == -EEXIST) {
		vbu_err("cannot write '%s': it exists and is not a regular file (use no --output "
			"for standard output)",
			q(path));
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0) {
		vbu_errno(r, "cannot write '%s'", q(path));
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

static int run_unwrap(const kvargs *a)
{
	vbk_escrow_info info;
	vbk_kv *kv = NULL;
	uint8_t *val = NULL;
	size_t len = 0;
	int r, status, attempted = 0;

	/* Before the passphrase is asked: an output that is a device, FIFO, directory or
	 * symlink would be replaced by a regular file holding the secret. */
	if (a->output && (status = check_output(a->output)) != 0)
		return status;
	status = unwrap_blob(a, &kv, &info, &val, &len, &attempted);
	audit_unwrap(a, kv, "unwrap", status ? NULL : &info, status, attempted);
	if (status != 0)
		return status;
	if (a->output) {
		r = vbu_write_file_atomic(a->output, val, len, 0600);
		if (r == -EEXIST) {
			status = check_output(a->output);
			goto out;
		}
		if (r < 0) {
			vbu_errno(r, "cannot write '%s'", q(a->output));
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		printf("secret '%s' version %u (VM '%s', disk '%s', point %s%s%s) written to "
		       "'%s'\n",
		       info.secret, info.secret_version, info.vm, info.disk, q(info.rp),
		       info.kind[0] ? ", kind " : "", info.kind, q(a->output));
	} else {
		/* Straight to the descriptor: no copy of the secret stays in a stdio buffer. */
		fflush(stdout);
		r = vbu_write_all(STDOUT_FILENO, val, len);
		if (r < 0) {
			vbu_errno(r, "cannot write to standard output");
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
	}
	status = VMBAK_EXIT_OK;
out:
	vbk_secret_free(val, len);
	vbk_kv_close(kv);
	return status;
}

static int run_restore(const kvargs *a)
{
	vbk_escrow_info info;
	vbk_kv *kv = NULL;
	uint8_t *val = NULL;
	size_t len = 0;
	uint32_t v = 0, kv_ver = 0;
	int r, status, attempted = 0;

	status = unwrap_blob(a, &kv, &info, &val, &len, &attempted);
	audit_unwrap(a, kv, "restore", status ? NULL : &info, status, attempted);
	if (status != 0)
		return status;
	r = vbk_kv_secret_set(kv, info.secret, val, len, info.kek[0] ? info.kek : NULL, &v,
			      &kv_ver);
	if (r < 0) {
		status = kv_err(r, "cannot restore secret");
		goto out;
	}
	if (info.kek[0])
		printf("secret '%s' restored as version %u, wrapped by key '%s' version %u (the "
		       "blob held version %u, of VM '%s', disk '%s', point %s)\n",
		       info.secret, v, info.kek, kv_ver, info.secret_version, info.vm, info.disk,
		       q(info.rp));
	else
		printf("secret '%s' restored as version %u, encrypted under the key vault's own "
		       "key (the blob held version %u, of VM '%s', disk '%s', point %s)\n",
		       info.secret, v, info.secret_version, info.vm, info.disk, q(info.rp));
	status = VMBAK_EXIT_OK;
out:
	vbk_secret_free(val, len);
	vbk_kv_close(kv);
	return status;
}

/* ---- key states ---- */

/* NAME/VERSION into name and *version. Prints the usage error. */
static int parse_name_version(const char *s, char name[VBK_KV_NAME_MAX + 1], uint32_t *version)
{
	const char *slash = strchr(s, '/');
	unsigned long x;
	char *end;

	if (!slash || (size_t)(slash - s) > VBK_KV_NAME_MAX)
		return usage_err("expected NAME/VERSION, got '%s' (e.g. kek/1)", q(s));
	memcpy(name, s, (size_t)(slash - s));
	name[slash - s] = '\0';
	if (!vbu_name_valid(name))
		return usage_err("invalid key name '%s': use " VBK_KV_NAME_RULE, q(name));
	errno = 0;
	x = strtoul(slash + 1, &end, 10);
	if (!(slash[1] >= '1' && slash[1] <= '9') || *end || errno || x > UINT32_MAX)
		return usage_err("invalid version in '%s': a number from 1", q(s));
	*version = (uint32_t)x;
	return 0;
}

static int run_key_state(const kvargs *a, vbk_key_state st)
{
	char name[VBK_KV_NAME_MAX + 1];
	escrow_use *uses = NULL;
	vbk_key_info *keys = NULL;
	vbk_kv *kv = NULL;
	size_t nu = 0, nk = 0, i;
	uint32_t version = 0;
	int r, status, changed = 0;

	if ((status = parse_name_version(a->name, name, &version)) != 0)
		return status;
	if (st == VBK_KEY_RETIRED && a->nvaults == 0)
		return usage_err(
		    "retire needs --vault VAULT for every vault that escrows to this key "
		    "vault, so that no blob there still uses the version");
	/* The key vault's names before any vault is opened; then the passphrase. */
	if ((status = escrow_kv_open(a->kv, 0, NULL, &kv)) != 0)
		return status;
	r = vbk_kv_keys(kv, &keys, &nk);
	if (r < 0) {
		status = kv_err(r, "cannot list keys");
		goto out;
	}
	for (i = 0; i < nk; i++)
		if (strcmp(keys[i].name, name) == 0)
			break;
	if (i == nk || version > keys[i].n_versions) {
		if (i == nk)
			vbu_err("no key '%s' in key vault '%s'", name, q(a->kv));
		else
			vbu_err("no version %u of key '%s' in key vault '%s'", version, name,
				q(a->kv));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	for (size_t k = 0; k < a->nvaults; k++) {
		uint64_t before = 0, after;

		before = uses_of(uses, nu, name, version);
		if ((status = escrow_uses(a->vaults[k], a->g, vbk_kv_id(kv), &uses, &nu)) != 0)
			goto out;
		after = uses_of(uses, nu, name, version);
		if (after > before) {
			vbu_err(
			    "cannot retire key '%s' version %u: %llu escrow blob%s in vault '%s' "
			    "still use%s it (run 'vmbak rewrap %s --keyvault %s --from %s/%u' "
			    "first)",
			    name, version, (unsigned long long)(after - before),
			    after - before == 1 ? "" : "s", q(a->vaults[k]),
			    after - before == 1 ? "s" : "", q(a->vaults[k]), q(a->kv), name,
			    version);
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
	}
	vbk_kv_close(kv);
	kv = NULL;
	if ((status = escrow_kv_open(a->kv, 1, a->passfile, &kv)) != 0)
		goto out;
	r = vbk_kv_key_set_state(kv, name, version, st, &changed);
	if (r < 0) {
		status = kv_err(r, "cannot change the state of a key");
		goto out;
	}
	printf("key '%s' version %u %s %s%s\n", name, version, changed ? "is now" : "was already",
	       vbk_key_state_name(st),
	       st == VBK_KEY_RETIRED ? " (no escrow blob in the vaults named uses it)" : "");
	status = VMBAK_EXIT_OK;
out:
	free(uses);
	vbk_key_list_free(keys, nk);
	vbk_kv_close(kv);
	return status;
}

static int run_key_disable(const kvargs *a)
{
	return run_key_state(a, VBK_KEY_DISABLED);
}

static int run_key_enable(const kvargs *a)
{
	return run_key_state(a, VBK_KEY_ENABLED);
}

static int run_key_retire(const kvargs *a)
{
	return run_key_state(a, VBK_KEY_RETIRED);
}

/* ---- audit ---- */

typedef struct audit_out {
	json_object *lines; /* every line, printed once the chain is known */
} audit_out;

static void audit_cb(void *arg, uint64_t seq, json_object *line, int hmac)
{
	audit_out *o = arg;

	(void)seq;
	(void)hmac;
	json_object_array_add(o->lines, json_object_get(line));
}

static void audit_print_line(json_object *l, int vouched)
{
	json_object *j;
	const char *f[] = {"seq", "time", "user", "host", "op", "result"};
	char t[1200];
	size_t n = 0;

	for (size_t i = 0; i < VBU_ARRAY_SIZE(f); i++) {
		const char *v =
		    json_object_object_get_ex(l, f[i], &j) ? json_object_get_string(j) : "-";
		int k = snprintf(t + n, sizeof(t) - n, "%s%s", i ? " " : "", q(v));

		if (k < 0 || (size_t)k >= sizeof(t) - n)
			break;
		n += (size_t)k;
	}
	printf("%s", t);
	if (json_object_object_get_ex(l, "key", &j)) {
		json_object *v;

		printf(" key=%s", q(json_object_get_string(j)));
		if (json_object_object_get_ex(l, "version", &v))
			printf("/%s", q(json_object_get_string(v)));
	}
	if (json_object_object_get_ex(l, "secret", &j)) {
		json_object *v;

		printf(" secret=%s", q(json_object_get_string(j)));
		if (json_object_object_get_ex(l, "secret_version", &v))
			printf("/%s", q(json_object_get_string(v)));
	}
	if (json_object_object_get_ex(l, "detail", &j))
		printf(" (%s)", q(json_object_get_string(j)));
	if (json_object_object_get_ex(l, "error", &j))
		printf(" error: %s", q(json_object_get_string(j)));
	printf("%s\n", vouched ? "" : " [unauthenticated]");
}

static int run_audit(const kvargs *a)
{
	audit_out o = {0};
	vbk_audit_result res;
	vbk_kv *kv = NULL;
	size_t n;
	int r, status;

	if ((status = escrow_kv_open(a->kv, 1, a->passfile, &kv)) != 0)
		return status;
	o.lines = json_object_new_array();
	if (!o.lines) {
		vbk_kv_close(kv);
		return kv_err(-ENOMEM, "cannot read the audit log");
	}
	r = vbk_audit_verify(kv, audit_cb, &o, &res);
	n = json_object_array_length(o.lines);
	if (a->json) {
		json_object *doc = json_object_new_object(), *arr = json_object_new_array();

		for (size_t i = 0; doc && arr && i < n; i++) {
			json_object *l = json_object_array_get_idx(o.lines, i), *c;

			c = json_object_new_object();
			if (!c)
				break;
			json_object_object_foreach(l, k, v)
			{
				if (strcmp(k, "mac") != 0)
					json_object_object_add(c, k, json_object_get(v));
			}
			json_object_object_add(c, "authenticated",
					       json_object_new_boolean(i + 1 <= res.authenticated));
			json_object_array_add(arr, c);
		}
		if (!doc || !arr) {
			json_object_put(doc);
			json_object_put(arr);
			status = kv_err(-ENOMEM, "cannot read the audit log");
			goto out;
		}
		json_object_object_add(doc, "keyvault", json_object_new_string(vbk_kv_id(kv)));
		json_object_object_add(doc, "intact", json_object_new_boolean(r == 0));
		json_object_object_add(doc, "lines", json_u64(res.lines));
		json_object_object_add(doc, "authenticated", json_u64(res.authenticated));
		json_object_object_add(doc, "signed_lines", json_u64(res.signed_lines));
		json_object_object_add(doc, "events", arr);
		status = json_print(doc);
	} else {
		for (size_t i = 0; i < n; i++)
			audit_print_line(json_object_array_get_idx(o.lines, i),
					 i + 1 <= res.authenticated);
		status = finish_stdout(VMBAK_EXIT_OK);
	}
	if (r < 0) {
		vbu_err("%s", q(vbk_kv_errmsg()));
		status = (r == -EBADMSG || r == -EPROTO || r == -ENODATA || r == -EPIPE)
			     ? VMBAK_EXIT_DAMAGE
			     : VMBAK_EXIT_FAIL;
	}
out:
	json_object_put(o.lines);
	vbk_kv_close(kv);
	return status;
}

/* ---- the verb ---- */

static const char *const a_kv[] = {"KV"};
static const char *const a_kv_name[] = {"KV", "NAME"};
static const char *const a_kv_blob[] = {"KV", "BLOB"};

static const kvsub subs[] = {
    {"init", "vmbak keyvault init KV", a_kv, 1, O_PASSFILE, run_init},
    {"key create",
     "vmbak keyvault key create KV NAME [--type rsa-3072|rsa-4096|aes-256] [--pkcs11 URI]",
     a_kv_name, 2, O_PASSFILE | O_TYPE | O_PKCS11, run_key_create},
    {"key rotate", "vmbak keyvault key rotate KV NAME", a_kv_name, 2, O_PASSFILE, run_key_rotate},
    {"key list", "vmbak keyvault key list KV [--json] [--vault VAULT ...]", a_kv, 1,
     O_JSON | O_VAULT, run_key_list},
    {"key disable", "vmbak keyvault key disable KV NAME/VERSION", a_kv_name, 2, O_PASSFILE,
     run_key_disable},
    {"key enable", "vmbak keyvault key enable KV NAME/VERSION", a_kv_name, 2, O_PASSFILE,
     run_key_enable},
    {"key retire", "vmbak keyvault key retire KV NAME/VERSION --vault VAULT [--vault VAULT ...]",
     a_kv_name, 2, O_PASSFILE | O_VAULT, run_key_retire},
    {"secret set", "vmbak keyvault secret set KV NAME --value-file F [--kek KEYNAME]", a_kv_name, 2,
     O_PASSFILE | O_VALUE | O_KEK, run_secret_set},
    {"secret list", "vmbak keyvault secret list KV [--json]", a_kv, 1, O_JSON, run_secret_list},
    {"unwrap", "vmbak keyvault unwrap KV BLOB [--output F]", a_kv_blob, 2, O_PASSFILE | O_OUTPUT,
     run_unwrap},
    {"restore", "vmbak keyvault restore KV BLOB", a_kv_blob, 2, O_PASSFILE, run_restore},
    {"verify", "vmbak keyvault verify KV", a_kv, 1, O_PASSFILE, run_verify},
    {"audit", "vmbak keyvault audit KV [--json]", a_kv, 1, O_PASSFILE | O_JSON, run_audit},
};

enum {
	OPT_PASSFILE = 0x100,
	OPT_TYPE,
	OPT_JSON,
	OPT_VALUE,
	OPT_KEK,
	OPT_OUTPUT,
	OPT_VAULT,
	OPT_PKCS11,
	OPT_PIN_REFUSED,
	OPT_KV_PASSPHRASE_REFUSED,
};

static int option_not_here(const kvsub *s, const char *opt)
{
	return usage_err("option '%s' does not apply to 'keyvault %s' (usage: %s)", opt, s->name,
			 s->usage);
}

/* The options of every subcommand. --passphrase-file is the key vault's (the global one is the
 * vault's, for --vault): these are the verb's own, not the table's VERB_PASSPHRASE_FILE. */
static const struct option kv_options[] = {
    {"passphrase-file", required_argument, NULL, OPT_PASSFILE},
    {"passphrase", required_argument, NULL, OPT_KV_PASSPHRASE_REFUSED},
    {"type", required_argument, NULL, OPT_TYPE},
    {"json", no_argument, NULL, OPT_JSON},
    {"value-file", required_argument, NULL, OPT_VALUE},
    {"kek", required_argument, NULL, OPT_KEK},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"vault", required_argument, NULL, OPT_VAULT},
    {"pkcs11", required_argument, NULL, OPT_PKCS11},
    {"pin", required_argument, NULL, OPT_PIN_REFUSED},
    {NULL, 0, NULL, 0},
};

/* One option; the subcommand (subs[tag]) must take it, and its argument must not be empty. */
static int kv_option(verb_ctx *c, int opt, const char *arg)
{
	const kvsub *s = &subs[c->cmd->tag];
	kvargs *a = c->opts;
	char **av = c->argv;
	unsigned need = 0;
	const char *optname;

	switch (opt) {
	case OPT_KV_PASSPHRASE_REFUSED:
		return usage_err("there is no --passphrase option: passphrases never go "
				 "on the command line; use --passphrase-file F or "
				 "VMBAK_KEYVAULT_PASSPHRASE_FILE");
	case OPT_PIN_REFUSED:
		return usage_err("there is no --pin option: PINs never go on the command "
				 "line; use VMBAK_PKCS11_PIN_FILE or VMBAK_PKCS11_PIN");
	case OPT_PASSFILE:
		need = O_PASSFILE;
		a->passfile = arg;
		break;
	case OPT_TYPE:
		need = O_TYPE;
		a->type = arg;
		break;
	case OPT_JSON:
		need = O_JSON;
		a->json = 1;
		break;
	case OPT_VALUE:
		need = O_VALUE;
		a->value_file = arg;
		break;
	case OPT_KEK:
		need = O_KEK;
		a->kek = arg;
		break;
	case OPT_OUTPUT:
		need = O_OUTPUT;
		a->output = arg;
		break;
	case OPT_VAULT:
		need = O_VAULT;
		if (!a->vaults && !(a->vaults = calloc((size_t)c->argc, sizeof(*a->vaults)))) {
			vbu_errno(-ENOMEM, "cannot parse the command line");
			return VMBAK_EXIT_FAIL;
		}
		a->vaults[a->nvaults++] = arg;
		break;
	case OPT_PKCS11:
		need = O_PKCS11;
		a->pkcs11 = arg;
		break;
	default:
		return VMBAK_EXIT_USAGE;
	}
	/* The option as given: "--opt=ARG" in one word, or "--opt" before its ARG. */
	optname = arg && optind >= 2 && av[optind - 1] == arg ? av[optind - 2] : av[optind - 1];
	if (!(s->opts & need))
		return option_not_here(s, optname);
	if (arg && !*arg)
		return usage_err("empty argument for '%s'", optname);
	return 0;
}

static int kv_check(verb_ctx *c)
{
	const kvsub *s = &subs[c->cmd->tag];
	kvargs *a = c->opts;
	int status;

	a->g = c->g;
	a->kv = c->args[0];
	if (!*a->kv)
		return usage_err("key vault path is empty");
	if (s->nargs == 2) {
		if (s->args == a_kv_blob)
			a->blob = c->args[1];
		else
			a->name = c->args[1];
	}
	for (size_t k = 0; k < a->nvaults; k++)
		if ((status = check_vault_arg(a->vaults[k])) != 0)
			return status;
	return 0;
}

static int kv_run(verb_ctx *c)
{
	return subs[c->cmd->tag].run(c->opts);
}

static void kv_done(verb_ctx *c)
{
	free(((kvargs *)c->opts)->vaults);
}

/* The subcommand (one or two words) is found here, with the messages that name the key vault;
 * its options and arguments then go through verb_main() with an entry made from subs[]. */
static int cmd_keyvault(int argc, char **argv, vmbak_globals *g)
{
	const kvsub *s = NULL;
	char name[32], **av = NULL;
	int words, ac, i, status;

	if (argc < 2)
		return usage_err("no keyvault command given (usage: %s)",
				 "vmbak keyvault init|key|secret|unwrap|restore|verify|audit ...");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(keyvault_help, stdout);
		return VMBAK_EXIT_OK;
	}
	words = (strcmp(argv[1], "key") == 0 || strcmp(argv[1], "secret") == 0) ? 2 : 1;
	if (words == 2 && argc < 3)
		return usage_err("missing %s command: use 'keyvault %s %s'", argv[1], argv[1],
				 strcmp(argv[1], "key") == 0
				     ? "create|rotate|list|disable|enable|retire"
				     : "set|list");
	if (words == 2 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0)) {
		fputs(keyvault_help, stdout);
		return VMBAK_EXIT_OK;
	}
	snprintf(name, sizeof(name), "%s%s%s", argv[1], words == 2 ? " " : "",
		 words == 2 ? argv[2] : "");
	for (size_t k = 0; k < VBU_ARRAY_SIZE(subs); k++)
		if (strcmp(subs[k].name, name) == 0)
			s = &subs[k];
	if (!s)
		return usage_err("unknown keyvault command '%s' (try 'vmbak keyvault --help')",
				 q(name));
	/* argv for getopt: "keyvault" (so messages point to 'vmbak keyvault --help'), then what
	 * follows the subcommand's words. */
	ac = argc - words;
	av = calloc((size_t)ac + 1, sizeof(*av));
	if (!av) {
		vbu_errno(-ENOMEM, "cannot parse the command line");
		return VMBAK_EXIT_FAIL;
	}
	av[0] = argv[0];
	for (i = 1; i < ac; i++)
		av[i] = argv[i + words];
	{
		const vmbak_cmd entry = {
		    .name = argv[0],
		    .help = keyvault_help,
		    .usage = s->usage,
		    .arg_names = s->args,
		    .min_args = s->nargs,
		    .max_args = s->nargs,
		    .options = kv_options,
		    .opts_size = sizeof(kvargs),
		    .option = kv_option,
		    .check = kv_check,
		    .run = kv_run,
		    .done = kv_done,
		    .tag = (unsigned long)(s - subs),
		};

		status = verb_main(&entry, ac, av, g);
	}
	free(av);
	return status;
}

const vmbak_cmd cmd_keyvault_def = {
    .name = "keyvault",
    .summary = "manage a key vault: KEKs, secrets, escrowed keys",
    .help = keyvault_help,
    .main = cmd_keyvault,
};

/* ---- escrow at ingest ---- */

struct escrow_ctx {
	vbk_kv *kv;
	uint8_t signer[32]; /* the key vault's signing key fingerprint, and its generation */
	uint64_t generation;
	size_t n;
	int check; /* --check-escrow */
	char **disks;
	vbk_escrow **prepared;
	vbk_kind *kinds;  /* [n]: --escrow-kind, or VBK_KIND_NONE until escrow_headers() */
	uint8_t *decided; /* [n]: escrow_headers() has decided the kind of disks[i] */
	char err[512];	  /* the first failure inside the commit, for escrow_report() */
};

void escrow_ctx_free(escrow_ctx *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->disks[i]);
		vbk_escrow_free(c->prepared[i]);
	}
	free(c->disks);
	free(c->prepared);
	free(c->kinds);
	free(c->decided);
	vbk_kv_close(c->kv);
	free(c);
}

/* Reads an escrowed disk's header: from its path, or through its source object. */
typedef struct hdr_src {
	const char *path;      /* a raw file or block device, or NULL */
	const vbs_source *src; /* else: NBD, an image through qemu-nbd, a VM's export */
	const char *where;     /* names it in messages, quoted: "'PATH'", "QEMU disk 'vda'" */
} hdr_src;

/* A vbk_hdr_reader over a vbs_source: reads clipped to its size, in ios of at most 4 MiB. */
static int hdr_src_read(void *arg, void *buf, size_t len, uint64_t off, size_t *ret_got)
{
	const vbs_source *s = arg;
	vbs_source_io io[4];
	size_t want, n = 0, done = 0;
	int r;

	if (off >= s->size) {
		*ret_got = 0;
		return 0;
	}
	want = (uint64_t)len < s->size - off ? len : (size_t)(s->size - off);
	while (done < want) {
		for (n = 0; n < VBU_ARRAY_SIZE(io) && done < want; n++) {
			size_t l = want - done < (4u << 20) ? want - done : (4u << 20);

			io[n].off = off + done;
			io[n].len = l;
			io[n].buf = (uint8_t *)buf + done;
			done += l;
		}
		vbu_clear_err();
		r = s->ops->read(s->arg, io, n);
		if (r < 0)
			return r;
	}
	*ret_got = want;
	return 0;
}

static int hdr_probe(const hdr_src *h, vbk_hdr_type *ret)
{
	if (h->path)
		return vbk_hdr_probe(h->path, ret);
	return vbk_hdr_probe_reader(hdr_src_read, (void *)h->src, h->src->size, ret);
}

static int hdr_check(const hdr_src *h, const uint8_t *val, size_t len)
{
	if (h->path)
		return vbk_hdr_check(h->path, val, len);
	return vbk_hdr_check_reader(hdr_src_read, (void *)h->src, h->src->size, val, len, NULL);
}

/* --check-escrow: the secret val (len bytes) prepared for disk opens the LUKS or BitLocker
 * header of its source, of type t. */
static int check_one(const vbk_escrow_info *info, const char *disk, const hdr_src *h,
		     vbk_hdr_type t, const uint8_t *val, size_t len)
{
	const char *what = t == VBK_HDR_BITLK ? "BitLocker" : "LUKS";
	const char *source = h->where;
	int r;

	/* On a private copy of the header area: cryptsetup repairs a damaged LUKS2 header as it
	 * loads it, and a backup must never write its source. */
	vbu_clear_err();
	r = hdr_check(h, val, len);
	if (r == 0)
		return 0;
	if (r == -ENOENT && !vbs_errmsg()[0])
		vbu_err("--check-escrow needs cryptsetup, which is not in /usr/sbin, /sbin, "
			"/usr/bin or /bin (Debian package cryptsetup-bin)");
	else if (r == -EFBIG)
		vbu_err("cannot check the escrow of disk '%s': the LUKS header area of %s ends "
			"beyond %u MiB",
			disk, source, VBK_HDR_AREA_MAX >> 20);
	else if (r < 0 && vbs_errmsg()[0])
		vbu_err("cannot check the escrow of disk '%s': %s", disk, q(vbs_errmsg()));
	else if (r < 0)
		vbu_errno(r, "cannot run cryptsetup to check the escrow of disk '%s'", disk);
	else if (r == 2)
		vbu_err("secret '%s' version %u does not open the %s header of disk '%s' (%s): "
			"no recovery point made",
			info->secret, info->secret_version, what, disk, source);
	else if (t == VBK_HDR_BITLK)
		/* cryptsetup 2.6 says 1 for some refusals (a wrong password on an Elephant volume)
		 * and for volumes it cannot test (encrypting on write, partially decrypted). */
		vbu_err("secret '%s' version %u does not open the BitLocker header of disk '%s' "
			"(%s), or cryptsetup cannot test this volume (status %d; it cannot while "
			"it is encrypting or partially decrypted): no recovery point made",
			info->secret, info->secret_version, disk, source, r);
	else
		vbu_err("cannot check the escrow of disk '%s': %s is not a LUKS or BitLocker "
			"volume (cryptsetup exited with status %d)",
			disk, source, r);
	return VMBAK_EXIT_FAIL;
}

/* The kind of secret the blob of disk says it holds: the one given (kind, checked against the
 * disk's header type t and, when the key vault is unlocked, against the value val), else found:
 * luks for a LUKS disk, the form of the value for a BitLocker disk, none for a disk that is
 * neither at offset 0. Prints the error; exit status. */
static int decide_kind(const vbk_escrow_info *info, const char *disk, const char *source,
		       vbk_hdr_type t, vbk_kind kind, const uint8_t *val, size_t len, vbk_kind *ret)
{
	const char *why = NULL;

	if (kind != VBK_KIND_NONE) {
		if ((t == VBK_HDR_LUKS && kind != VBK_KIND_LUKS) ||
		    (t == VBK_HDR_BITLK && !vbk_kind_is_bitlocker(kind))) {
			vbu_err("--escrow-kind %s=%s does not fit disk '%s': %s is a %s volume",
				disk, vbk_kind_name(kind), disk, source,
				t == VBK_HDR_LUKS ? "LUKS" : "BitLocker");
			return VMBAK_EXIT_FAIL;
		}
	} else if (t == VBK_HDR_LUKS) {
		kind = VBK_KIND_LUKS;
	} else if (t == VBK_HDR_BITLK) {
		if (!val) {
			vbu_err(
			    "cannot tell which kind of BitLocker secret '%s' is without the key "
			    "vault passphrase: give --escrow-kind %s=bitlocker-password, "
			    "bitlocker-recovery or bitlocker-startup-key",
			    info->secret, disk);
			return VMBAK_EXIT_FAIL;
		}
		kind = vbk_kind_classify_bitlocker(val, len);
	}
	if (val && vbk_kind_check(kind, val, len, &why) < 0) {
		vbu_err("secret '%s' version %u for disk '%s' is not a valid %s: %s", info->secret,
			info->secret_version, disk, kind ? vbk_kind_name(kind) : "secret", why);
		return VMBAK_EXIT_FAIL;
	}
	*ret = kind;
	return 0;
}

/* Decides the kind of the secret prepared for disk (and checks it with --check-escrow). */
static int prepare_kind(vbk_kv *kv, vbk_escrow *e, const char *disk, const hdr_src *h,
			vbk_kind kind, int check)
{
	vbk_escrow_info info;
	vbk_hdr_type t;
	uint8_t *val = NULL;
	size_t len = 0;
	int r, status;

	vbk_escrow_describe(e, &info);
	vbu_clear_err();
	r = hdr_probe(h, &t);
	if (r < 0) {
		if (vbs_errmsg()[0])
			vbu_err("cannot read the header of disk '%s' source %s: %s", disk, h->where,
				q(vbs_errmsg()));
		else
			vbu_errno(r, "cannot read the header of disk '%s' source %s", disk,
				  h->where);
		return VMBAK_EXIT_FAIL;
	}
	if (vbk_kv_unlocked(kv)) {
		r = vbk_kv_secret_get(kv, info.secret, info.secret_version, &val, &len);
		if (r < 0)
			return kv_err(r, "cannot check escrow");
	}
	status = decide_kind(&info, disk, h->where, t, kind, val, len, &kind);
	if (status == 0 && check)
		status = check_one(&info, disk, h, t, val, len);
	if (status == 0)
		vbk_escrow_set_kind(e, kind);
	vbk_secret_free(val, len);
	return status;
}

int escrow_setup(const char *kv_path, const char *passfile, const char *const *disks,
		 const char *const *secrets, const vbk_kind *kinds, size_t n, int check,
		 escrow_ctx **ret)
{
	escrow_ctx *c;
	int r, status, need = check;

	c = calloc(1, sizeof(*c));
	if (c) {
		c->disks = calloc(n ? n : 1, sizeof(*c->disks));
		c->prepared = calloc(n ? n : 1, sizeof(*c->prepared));
		c->kinds = calloc(n ? n : 1, sizeof(*c->kinds));
		c->decided = calloc(n ? n : 1, sizeof(*c->decided));
	}
	if (!c || !c->disks || !c->prepared || !c->kinds || !c->decided) {
		escrow_ctx_free(c);
		vbu_errno(-ENOMEM, "cannot prepare escrow");
		return VMBAK_EXIT_FAIL;
	}
	c->check = check;
	status = escrow_kv_open(kv_path, 0, NULL, &c->kv);
	if (status != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		r = vbk_escrow_needs_unlock(c->kv, secrets[i]);
		if (r < 0) {
			status = kv_err(r, "cannot prepare escrow");
			goto out;
		}
		need |= r;
	}
	if (need) {
		/* An AES KEK or a secret without a KEK: wrapping needs the key vault's keys. */
		vbk_kv_close(c->kv);
		c->kv = NULL;
		status = escrow_kv_open(kv_path, 1, passfile, &c->kv);
		if (status != 0)
			goto out;
	}
	/* Wrapping trusts the KEK's public key only in a key vault signed by its owner, as the
	 * vault has seen it before (escrow_pin). */
	r = vbk_kv_signer(c->kv, c->signer, &c->generation);
	if (r < 0) {
		status = kv_err(r, "cannot prepare escrow");
		goto out;
	}
	if (r == 0) {
		vbu_err(
		    "key vault '%s' is not signed (made by an older vmbak): run 'vmbak keyvault "
		    "verify %s' once, with its passphrase, to sign it",
		    q(kv_path), q(kv_path));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		c->disks[i] = strdup(disks[i]);
		if (!c->disks[i]) {
			vbu_errno(-ENOMEM, "cannot prepare escrow");
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		c->n = i + 1;
		r = vbk_escrow_prepare(c->kv, secrets[i], &c->prepared[i]);
		if (r < 0) {
			status = kv_err(r, "cannot prepare escrow");
			goto out;
		}
		c->kinds[i] = kinds[i];
	}
	*ret = c;
	c = NULL;
	status = 0;
out:
	escrow_ctx_free(c);
	return status;
}

/* The disks of the ingest, for the message about a disk it does not have: "a, b, c". */
static void disk_names(const vbs_ingest_disk *disks, size_t n, char *out, size_t cap)
{
	size_t at = 0;

	out[0] = '\0';
	for (size_t j = 0; j < n; j++) {
		int w = snprintf(out + at, cap - at, "%s%s", j ? ", " : "", disks[j].name);

		if (w < 0 || (size_t)w >= cap - at) {
			snprintf(out + (at < cap - 4 ? at : cap - 4), 4, "...");
			return;
		}
		at += (size_t)w;
	}
}

int escrow_headers(escrow_ctx *c, const vbs_ingest_disk *disks, size_t n, const char *vm)
{
	char where[VBU_ERRMSG_MAX], names[256];
	int status;

	for (size_t i = 0; c && i < c->n; i++) {
		hdr_src h = {.where = where};
		const char *label;
		size_t j;

		for (j = 0; j < n; j++)
			if (strcmp(disks[j].name, c->disks[i]) == 0)
				break;
		if (j == n) {
			disk_names(disks, n, names, sizeof(names));
			vbu_err("--escrow names disk '%s', which VM '%s' does not have (its disks: "
				"%s): no recovery point made",
				c->disks[i], vm, names);
			return VMBAK_EXIT_FAIL;
		}
		h.path = disks[j].src ? NULL : disks[j].path;
		h.src = disks[j].src;
		if (!h.path && !h.src) {
			vbu_errno(-EINVAL, "cannot read the header of disk '%s'", c->disks[i]);
			return VMBAK_EXIT_FAIL;
		}
		/* A path or a URI is quoted; a VM's export names itself ("QEMU disk 'vda'"). */
		label = h.path ? h.path : h.src->label ? h.src->label : disks[j].name;
		if (strchr(label, '\''))
			snprintf(where, sizeof(where), "%s", q(label));
		else
			snprintf(where, sizeof(where), "'%s'", q(label));
		status =
		    prepare_kind(c->kv, c->prepared[i], c->disks[i], &h, c->kinds[i], c->check);
		if (status != 0)
			return status;
		c->decided[i] = 1;
	}
	return 0;
}

int escrow_blob_cb(void *arg, const char *vm, const char *rp_id, const char *disk, char **ret_blob,
		   size_t *ret_len)
{
	escrow_ctx *c = arg;
	int r;

	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->disks[i], disk) != 0)
			continue;
		if (!c->decided[i]) {
			/* escrow_headers() was not called for this ingest's disks: a blob without
			 * its kind, unchecked, is never made. */
			snprintf(c->err, sizeof(c->err),
				 "the header of disk '%s' was not read: no escrow made", disk);
			return -EINVAL;
		}
		r = vbk_escrow_make(c->prepared[i], vm, disk, rp_id, ret_blob, ret_len);
		if (r < 0 && !c->err[0])
			snprintf(c->err, sizeof(c->err), "%s", vbk_kv_errmsg());
		return r;
	}
	snprintf(c->err, sizeof(c->err), "no escrow prepared for disk '%s'", disk);
	return -EINVAL;
}

int escrow_report(const escrow_ctx *c)
{
	if (!c || !c->err[0])
		return 0;
	vbu_err("%s", q(c->err));
	return VMBAK_EXIT_FAIL;
}

int escrow_pin(const escrow_ctx *c, vbs_vault *v, const char *vault_path)
{
	uint64_t seen = 0;
	int r;

	r = vbs_kvpin_check(v, vbk_kv_id(c->kv), c->signer, c->generation, &seen);
	if (r == -EKEYREJECTED) {
		vbu_err("key vault '%s' (id %s) is signed by another key than vault '%s' has seen: "
			"it was replaced; no recovery point made",
			q(vbk_kv_path(c->kv)), vbk_kv_id(c->kv), q(vault_path));
		return VMBAK_EXIT_FAIL;
	}
	if (r == -ESTALE) {
		vbu_err(
		    "key vault '%s' is at generation %llu, older than generation %llu that vault "
		    "'%s' has seen: an older copy was put back; no recovery point made",
		    q(vbk_kv_path(c->kv)), (unsigned long long)c->generation,
		    (unsigned long long)seen, q(vault_path));
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0)
		return store_err(r, "cannot record key vault '%s' in vault '%s'",
				 q(vbk_kv_path(c->kv)), q(vault_path));
	return 0;
}
