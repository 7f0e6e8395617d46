/* fuzz_kvfile.c: the key vault file, KV/keyvault.json (vbk_kv_open and the listings).
 *
 * Each input is written as the file of a scratch key vault and opened; a key vault that opens
 * is listed (keys and their versions, secrets and theirs), as `vmbak keyvault key list` does.
 * Nothing is unlocked (that runs scrypt with the file's parameters).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], file[300], lock_file[300];

static void cleanup(void)
{
	unlink(file);
	unlink(lock_file);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/fuzz_kvfile.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		abort();
	snprintf(file, sizeof(file), "%s/%s", dir, VBK_KV_FILE);
	snprintf(lock_file, sizeof(lock_file), "%s/%s", dir, VBK_KV_LOCK_FILE);
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vbk_key_info *keys = NULL;
	vbk_secret_info *secrets = NULL;
	size_t nk = 0, ns = 0;
	vbk_kv *kv = NULL;
	int fd;

	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
	if (vbk_kv_open(dir, &kv) < 0) {
		if (!vbk_kv_errmsg()[0] || strchr(vbk_kv_errmsg(), '\n'))
			abort();
		return 0;
	}
	if (strlen(vbk_kv_id(kv)) != VBK_KV_ID_LEN)
		abort();
	if (vbk_kv_keys(kv, &keys, &nk) == 0) {
		for (size_t i = 0; i < nk; i++)
			if (!vbu_name_valid(keys[i].name) || keys[i].n_versions == 0)
				abort();
		vbk_key_list_free(keys, nk);
	}
	if (vbk_kv_secrets(kv, &secrets, &ns) == 0) {
		for (size_t i = 0; i < ns; i++)
			if (!vbu_name_valid(secrets[i].name))
				abort();
		vbk_secret_list_free(secrets, ns);
	}
	vbk_kv_close(kv);
	return 0;
}
