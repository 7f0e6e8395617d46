/* fuzz_escrow.c: escrow blobs, the DISK.key files of a point (vbk_escrow_parse).
 *
 * A blob comes from a vault or from a user (`vmbak keyvault unwrap KV BLOB`): parsing checks
 * its form only, and must give NUL-terminated fields within their buffers, or fail with a
 * message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "escrow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TERMINATED(f) (memchr((f), '\0', sizeof(f)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vbk_escrow_info info;

	if (vbk_escrow_parse((const char *)data, size, &info) < 0) {
		if (!vbk_kv_errmsg()[0] || strchr(vbk_kv_errmsg(), '\n'))
			abort();
		return 0;
	}
	if (!TERMINATED(info.vm) || !TERMINATED(info.disk) || !TERMINATED(info.rp) ||
	    !TERMINATED(info.keyvault) || !TERMINATED(info.secret) || !TERMINATED(info.kek) ||
	    !TERMINATED(info.kek_type) || !TERMINATED(info.kek_fingerprint) ||
	    !TERMINATED(info.algorithm))
		abort();
	if (!vbu_name_valid(info.secret) || (info.kek[0] && !vbu_name_valid(info.kek)))
		abort();
	return 0;
}
