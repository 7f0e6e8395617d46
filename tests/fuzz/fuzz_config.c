/* fuzz_config.c: the vault config, VAULT/vmbak-vault.json (vbs_vault_open).
 *
 * Each input is written as the config of a scratch vault directory and opened. Opening must
 * fail with a message, or give a vault whose fields are in range. Nothing is unlocked (that
 * would run scrypt with whatever parameters the input names, which the open already bounds).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vault.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], file[300];

static void cleanup(void)
{
	unlink(file);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/fuzz_config.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		abort();
	snprintf(file, sizeof(file), "%s/%s", dir, VBS_CONFIG_FILE);
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vbs_vault *v = NULL;
	uint32_t cs;
	int fd, r;

	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
	r = vbs_vault_open(dir, 1, &v);
	if (r < 0) {
		if (!vbs_errmsg()[0] || strchr(vbs_errmsg(), '\n'))
			abort(); /* every failure leaves one line for the user */
		return 0;
	}
	cs = vbs_vault_chunk_size(v);
	if (cs < VBS_CHUNK_SIZE_MIN || cs > VBS_CHUNK_SIZE_MAX || (cs & (cs - 1)) ||
	    strlen(vbs_vault_uuid(v)) != 36 ||
	    vbs_vault_needs_passphrase(v) != vbs_vault_encrypted(v))
		abort();
	vbs_vault_close(v);
	return 0;
}
