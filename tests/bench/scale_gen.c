/* nbdkit cc plugin for tests/bench/scale.sh: a disk of `size` bytes whose 4 KiB blocks
 * all differ and compress to a few bytes: each block holds its 64-bit index (plus
 * `salt`, so that two disks share no block) big-endian in its first 8 bytes, then zeros.
 * No block is all zeros, so none is a hole. Run as
 *   nbdkit cc tests/bench/scale_gen.c size=BYTES salt=N
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static int64_t size = 0;
static uint64_t salt = 0;

static int gen_config(const char *key, const char *value)
{
	if (strcmp(key, "size") == 0) {
		size = nbdkit_parse_size(value);
		return size < 0 || size % 4096 ? -1 : 0;
	}
	if (strcmp(key, "salt") == 0)
		return nbdkit_parse_uint64_t("salt", value, &salt);
	nbdkit_error("unknown parameter '%s'", key);
	return -1;
}

static void *gen_open(int readonly)
{
	return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t gen_get_size(void *h)
{
	return size;
}

static int gen_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	unsigned char *p = buf;

	memset(buf, 0, count);
	for (uint64_t at = offset; at < offset + count;) {
		uint64_t blk = at / 4096, start = blk * 4096;
		uint64_t v = salt + blk + 1;
		unsigned char word[8];

		for (int i = 0; i < 8; i++)
			word[i] = (unsigned char)(v >> (56 - 8 * i));
		for (int i = 0; i < 8; i++)
			if (start + i >= offset && start + i < offset + count)
				p[start + i - offset] = word[i];
		at = start + 4096;
	}
	return 0;
}

static struct nbdkit_plugin plugin = {
	.name = "scalegen",
	.config = gen_config,
	.open = gen_open,
	.get_size = gen_get_size,
	.pread = gen_pread,
};

NBDKIT_REGISTER_PLUGIN(plugin)
