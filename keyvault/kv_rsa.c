/* kv_rsa.c: RSA keys of the key vault as DER (see kv_internal.h). A leaf of keyvault/: kv_wrap.c,
 * kv_keys.c and pkcs11.c use it, it uses none of them. */
#include <errno.h>
#include <stdint.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crypto.h"
#include "kv_internal.h"

/* ---- RSA ---- */

int kv_rsa_generate(unsigned bits, EVP_PKEY **ret)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);

	if (!pk)
		return vbk_ossl_err();
	*ret = pk;
	return 0;
}

/* n bytes of DER that i2d_PUBKEY or i2d_PrivateKey made at der (n <= 0: it failed). */
static int der_result(unsigned char *der, int n, uint8_t **ret, size_t *ret_len)
{
	if (n <= 0)
		return vbk_ossl_err();
	*ret = der;
	*ret_len = (size_t)n;
	return 0;
}

int kv_rsa_public_der(EVP_PKEY *pk, uint8_t **ret, size_t *ret_len)
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pk, &der);

	return der_result(der, n, ret, ret_len);
}

int kv_rsa_private_der(EVP_PKEY *pk, uint8_t **ret, size_t *ret_len)
{
	unsigned char *der = NULL;
	int n = i2d_PrivateKey(pk, &der);

	return der_result(der, n, ret, ret_len);
}

int kv_rsa_load(const uint8_t *der, size_t len, int priv, unsigned bits, EVP_PKEY **ret)
{
	const unsigned char *p = der;
	EVP_PKEY *pk;

	if (len == 0 || len > KV_PRIVATE_MAX)
		return -EPROTO;
	pk = priv ? d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)len)
		  : d2i_PUBKEY(NULL, &p, (long)len);
	if (!pk || p != der + len || !EVP_PKEY_is_a(pk, "RSA") ||
	    EVP_PKEY_get_bits(pk) != (int)bits) {
		ERR_clear_error();
		EVP_PKEY_free(pk);
		return -EPROTO;
	}
	*ret = pk;
	return 0;
}
