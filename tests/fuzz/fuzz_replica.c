/* fuzz_replica.c: the requests a replica answers (vbs_replica_handle), the bytes a sync peer
 * sends over ssh.
 *
 * A replica of a fresh unencrypted vault is made once in a temporary directory (removed at
 * exit). Every input is one request: the answer must be a response (status 0, 1 or 2), an
 * error's text one line of printable ASCII, and nothing may crash or leak.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replica.h"
#include "vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static vbs_replica *rep;
static char dir[512];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	vbs_replica_close(rep);
	rep = NULL;
	if (dir[0])
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	vbs_init_opts o = {.encrypt = 0, .chunk_size = 16384};
	char src[600], dst[600];

	const char *tmp = getenv("TMPDIR");

	if (snprintf(dir, sizeof(dir), "%s/vmbak-fuzz-replica.XXXXXX",
		     tmp && *tmp ? tmp : "/tmp") >= (int)sizeof(dir) - 16)
		abort();
	if (!mkdtemp(dir))
		abort();
	atexit(cleanup);
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	if (vbs_vault_init(src, &o, NULL) < 0 || vbs_vault_init_replica(dst, src, &o) < 0 ||
	    vbs_replica_open(dst, &rep) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *resp = NULL;
	size_t len = 0;

	if (!rep)
		setup();
	if (vbs_replica_handle(rep, data, size, &resp, &len) < 0)
		return 0;
	if (len == 0 || resp[0] > VBS_SYNC_STALE)
		abort();
	if (resp[0] == VBS_SYNC_ERR)
		for (size_t i = 1; i < len; i++)
			if (resp[i] < 0x20 || resp[i] >= 0x7f)
				abort();
	free(resp);
	return 0;
}
