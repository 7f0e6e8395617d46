/* pkcs11_test.c: keyvault/pkcs11.c without a token: the strict URI check, and the software
 * OAEP decoding of the raw RSA fallback against OpenSSL's OAEP encryption. (The token itself is
 * tested with SoftHSM2 in tests/fuse/escrow_pkcs11.sh.) */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "crypto.h"
#include "pkcs11.h"
#include "unit.h"

static void test_uri(void)
{
	static const char *const given_ok[] = {
	    "pkcs11:token=escrow",
	    "pkcs11:token=escrow;object=kek",
	    "pkcs11:token=esc%20row;object=kek?module-name=softhsm2",
	    "pkcs11:serial=1234;model=SoftHSM%20v2?module-path=/usr/lib/softhsm/libsofthsm2.so",
	    "pkcs11:",
	};
	static const char *const given_bad[] = {
	    "",
	    "pkcs11",
	    "http://x",
	    "PKCS11:token=x",
	    "pkcs11:token=x;frobnicate=1",	  /* unknown attribute */
	    "pkcs11:token=x;token=y",		  /* twice */
	    "pkcs11:token=x?pin-value=1234",	  /* a PIN in the URI */
	    "pkcs11:token=x?pin-source=/etc/pin", /* a file named by the URI */
	    "pkcs11:token=x;id=%01",		  /* ids are vmbak's */
	    "pkcs11:token=x;type=private",	  /* and so is the type */
	    "pkcs11:token=x y",			  /* white space */
	    "pkcs11:token=x\n",
	    "pkcs11:token=\"x\"",
	    "pkcs11:token=x?module-path=lib.so", /* relative */
	    "pkcs11:token=x?module-name=../lib", /* not a plain name */
	    "pkcs11:token=%zz",			 /* bad percent encoding */
	};
	static const char *const stored_ok[] = {
	    "pkcs11:token=t;id=%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F;object=k;"
	    "type=private?module-name=softhsm2",
	    "pkcs11:token=t;id=%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F;type=secret-key",
	};
	static const char *const stored_bad[] = {
	    "pkcs11:token=t;object=k;type=private",				  /* no id */
	    "pkcs11:token=t;id=%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F", /* no type */
	    "pkcs11:token=t;id=%01%02;type=private",				  /* id too short */
	};
	char longer[VBK_P11_URI_MAX + 8];

	for (size_t i = 0; i < sizeof(given_ok) / sizeof(*given_ok); i++)
		CHECK_EQ_INT(vbk_p11_uri_check(given_ok[i], 0), 0);
	for (size_t i = 0; i < sizeof(given_bad) / sizeof(*given_bad); i++) {
		CHECK_EQ_INT(vbk_p11_uri_check(given_bad[i], 0), -EINVAL);
		CHECK(strncmp(vbk_kv_errmsg(), "invalid PKCS#11 URI", 19) == 0);
	}
	CHECK_EQ_INT(vbk_p11_uri_check(NULL, 0), -EINVAL);
	for (size_t i = 0; i < sizeof(stored_ok) / sizeof(*stored_ok); i++) {
		CHECK_EQ_INT(vbk_p11_uri_check(stored_ok[i], 1), 0);
		CHECK_EQ_INT(vbk_p11_uri_check(stored_ok[i], 0), -EINVAL);
	}
	for (size_t i = 0; i < sizeof(stored_bad) / sizeof(*stored_bad); i++)
		CHECK_EQ_INT(vbk_p11_uri_check(stored_bad[i], 1), -EINVAL);
	memcpy(longer, "pkcs11:token=", 13);
	memset(longer + 13, 'a', sizeof(longer) - 14);
	longer[sizeof(longer) - 1] = '\0';
	CHECK_EQ_INT(vbk_p11_uri_check(longer, 0), -EINVAL);
}

/* OpenSSL encrypts with OAEP (SHA-256, MGF1-SHA-256, label lab); the raw RSA decryption (what
 * CKM_RSA_X_509 gives) goes to em. */
static int oaep_em(EVP_PKEY *pk, const uint8_t lab[32], const uint8_t *msg, size_t len, uint8_t *em,
		   size_t *em_len)
{
	uint8_t ct[512];
	size_t ct_len = sizeof(ct);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
	unsigned char *l = OPENSSL_memdup(lab, 32);
	int ok;

	ok = c && l && EVP_PKEY_encrypt_init(c) > 0 &&
	     EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) > 0 &&
	     EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) > 0 &&
	     EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) > 0 &&
	     EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, 32) > 0;
	if (ok)
		l = NULL;
	ok = ok && EVP_PKEY_encrypt(c, ct, &ct_len, msg, len) > 0;
	EVP_PKEY_CTX_free(c);
	OPENSSL_free(l);
	if (!ok)
		return -1;
	c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
	ok = c && EVP_PKEY_decrypt_init(c) > 0 &&
	     EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) > 0 &&
	     EVP_PKEY_decrypt(c, em, em_len, ct, ct_len) > 0;
	EVP_PKEY_CTX_free(c);
	return ok ? 0 : -1;
}

static void test_oaep(void)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	uint8_t lab[32], other[32], msg[32], em[512], copy[512], out[512];
	size_t em_len = sizeof(em), out_len;

	CHECK(pk != NULL);
	if (!pk)
		return;
	CHECK_EQ_INT(vbk_random(lab, sizeof(lab)), 0);
	CHECK_EQ_INT(vbk_random(msg, sizeof(msg)), 0);
	memcpy(other, lab, sizeof(lab));
	other[31] ^= 1;
	CHECK_EQ_INT(oaep_em(pk, lab, msg, sizeof(msg), em, &em_len), 0);
	CHECK_EQ_INT(em_len, 384);

	memcpy(copy, em, em_len);
	out_len = sizeof(out);
	CHECK_EQ_INT(vbk_p11_oaep_decode(copy, em_len, lab, out, &out_len), 0);
	CHECK_EQ_INT(out_len, sizeof(msg));
	CHECK_EQ_MEM(out, msg, sizeof(msg));

	/* Another label, any changed byte, a short buffer or a short message: refused. */
	memcpy(copy, em, em_len);
	out_len = sizeof(out);
	CHECK_EQ_INT(vbk_p11_oaep_decode(copy, em_len, other, out, &out_len), -EBADMSG);
	for (size_t i = 0; i < em_len; i += 37) {
		memcpy(copy, em, em_len);
		copy[i] ^= 0x40;
		out_len = sizeof(out);
		CHECK_EQ_INT(vbk_p11_oaep_decode(copy, em_len, lab, out, &out_len), -EBADMSG);
	}
	memcpy(copy, em, em_len);
	out_len = 16;
	CHECK_EQ_INT(vbk_p11_oaep_decode(copy, em_len, lab, out, &out_len), -EBADMSG);
	out_len = sizeof(out);
	CHECK_EQ_INT(vbk_p11_oaep_decode(copy, 65, lab, out, &out_len), -EBADMSG);
	/* An all-zero message (no 0x01 separator) is not a valid encoding either. */
	memset(copy, 0, em_len);
	out_len = sizeof(out);
	CHECK_EQ_INT(vbk_p11_oaep_decode(copy, em_len, lab, out, &out_len), -EBADMSG);
	EVP_PKEY_free(pk);
}

int main(void)
{
	RUN(test_uri);
	RUN(test_oaep);
	return unit_finish();
}
