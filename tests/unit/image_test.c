/* image_test.c: reading disks of points (store/image.c) through a real small vault: holes and
 * zeros, chunks stored raw (whose last bytes live apart, chunkstore_lmdb.c's tails) and
 * compressed, reads across chunk boundaries, sizes that are not a multiple of 512 or of the
 * chunk size, reads at and past the end, pieces without copying, SEEK_DATA and SEEK_HOLE, and
 * a point deleted while open. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "ingest.h"
#include "lifecycle.h"
#include "rp.h"
#include "unit.h"
#include "vault.h"

#define CS 65536u /* 64 KiB: a raw frame overflows its pages by a few bytes: a tail */
#define NCH 7u
#define SIZE ((size_t)NCH * CS + 1003u) /* 7 chunks and 1003 bytes: not a multiple of 512 */
#define SMALL 777u			/* a disk smaller than one chunk */

static char dir[256];
static uint8_t *want, *small_want;

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* Chunk by chunk: 0 random (raw), 1 a hole of the file, 2 written zeros, 3 text (compressed),
 * 4 random, 5 the same as 0 (one chunk stored), 6 half random half zeros, then 1003 random
 * bytes (the short last chunk). */
static void make_disk(const char *path, const char *small_path)
{
	int fd;

	want = calloc(1, SIZE);
	small_want = malloc(SMALL);
	CHECK(want && small_want);
	fill(want, CS, 1);
	for (size_t i = 0; i < CS; i++)
		want[3 * CS + i] = "blocks of a file system "[i % 24];
	fill(want + 4 * CS, CS, 4);
	memcpy(want + 5 * CS, want, CS);
	fill(want + 6 * CS, CS / 2, 6);
	fill(want + 7 * CS, SIZE - 7 * CS, 7);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, want, CS, 0) == CS);
	CHECK(pwrite(fd, want + 2 * CS, SIZE - 2 * CS, 2 * CS) == (ssize_t)(SIZE - 2 * CS));
	close(fd);
	fill(small_want, SMALL, 9);
	fd = open(small_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && pwrite(fd, small_want, SMALL, 0) == SMALL);
	close(fd);
}

static void read_at(vbs_image *img, const uint8_t *ref, size_t size, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len + 1);
	size_t got = 12345, exp = off >= size ? 0 : (len < size - off ? len : size - off);

	CHECK(buf != NULL);
	CHECK_EQ_INT(vbs_image_read(img, buf, len, off, &got), 0);
	CHECK_EQ_INT(got, exp);
	if (exp && memcmp(buf, ref + off, exp) != 0) {
		fprintf(stderr, "    bytes differ at off %llu len %zu\n", (unsigned long long)off,
			len);
		CHECK(0);
	}
	free(buf);
}

static void check_reads(vbs_image *img)
{
	CHECK_EQ_INT(vbs_image_size(img), SIZE);
	/* Data bytes: chunks 0, 3, 4, 5, 6 and the short one (holes and zeros are not data),
	 * counted whole, the sum clipped to the size (rp.c's vbs_disk_data_bytes). */
	CHECK_EQ_INT(vbs_image_data_bytes(img), 6 * CS);
	read_at(img, want, SIZE, 0, SIZE);
	/* Across every chunk boundary, and single bytes on both sides of it. */
	for (uint64_t k = 1; k <= NCH; k++) {
		read_at(img, want, SIZE, k * CS - 7, 14);
		read_at(img, want, SIZE, k * CS - 1, 1);
		read_at(img, want, SIZE, k * CS, 1);
		read_at(img, want, SIZE, k * CS - 3000, 2 * CS + 77);
	}
	/* Odd pieces all through. */
	for (uint64_t off = 0; off < SIZE; off += 7777)
		read_at(img, want, SIZE, off, 7777);
	/* The end: a short read, an empty one at it, nothing past it. */
	read_at(img, want, SIZE, SIZE - 5, 100);
	read_at(img, want, SIZE, SIZE - 1, 1);
	read_at(img, want, SIZE, SIZE, 10);
	read_at(img, want, SIZE, SIZE + 12345, 10);
	read_at(img, want, SIZE, UINT64_MAX - 3, 10);
	read_at(img, want, SIZE, 100, 0);
}

static void check_segs(vbs_vault *v, vbs_image *img)
{
	size_t max = vbs_image_segs_max(img, SIZE), n = 0, got = 0, at = 0;
	vbs_image_seg *segs = calloc(max, sizeof(*segs));
	int ok = 1;

	CHECK(segs != NULL);
	CHECK_EQ_INT(vbs_image_read_segs(img, SIZE, 0, segs, max, &n, &got), 0);
	CHECK_EQ_INT(got, SIZE);
	/* 0 | 1+2 zeros as one run | 3 | 4 | 5 | 6 | short */
	CHECK_EQ_INT(n, 7);
	for (size_t i = 0; i < n; i++) {
		if (segs[i].entry)
			ok &= memcmp(segs[i].data, want + at, segs[i].len) == 0;
		else
			for (size_t j = 0; j < segs[i].len; j++)
				ok &= want[at + j] == 0;
		at += segs[i].len;
	}
	CHECK(ok);
	CHECK_EQ_INT(at, SIZE);
	CHECK(n >= 2 && !segs[1].entry && segs[1].len == 2 * CS);
	vbs_image_segs_release(v, segs, n);
	/* Too little room: -EOVERFLOW, nothing held. */
	CHECK_EQ_INT(vbs_image_read_segs(img, SIZE, 0, segs, 3, &n, &got), -EOVERFLOW);
	CHECK_EQ_INT(n, 0);
	free(segs);
}

static void check_seek(vbs_image *img)
{
	uint64_t r = 0;

	CHECK_EQ_INT(vbs_image_seek(img, 0, SEEK_DATA, &r), 0);
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_INT(vbs_image_seek(img, 10, SEEK_HOLE, &r), 0);
	CHECK_EQ_INT(r, CS);
	CHECK_EQ_INT(vbs_image_seek(img, CS + 5, SEEK_DATA, &r), 0);
	CHECK_EQ_INT(r, 3 * CS);
	CHECK_EQ_INT(vbs_image_seek(img, CS + 5, SEEK_HOLE, &r), 0);
	CHECK_EQ_INT(r, CS + 5);
	CHECK_EQ_INT(vbs_image_seek(img, 3 * CS, SEEK_HOLE, &r), 0);
	CHECK_EQ_INT(r, SIZE); /* no hole after: the end */
	CHECK_EQ_INT(vbs_image_seek(img, SIZE - 1, SEEK_DATA, &r), 0);
	CHECK_EQ_INT(r, SIZE - 1);
	CHECK_EQ_INT(vbs_image_seek(img, SIZE, SEEK_DATA, &r), -ENXIO);
	CHECK_EQ_INT(vbs_image_seek(img, SIZE, SEEK_HOLE, &r), -ENXIO);
}

static void run(int encrypt)
{
	vbs_init_opts io = {encrypt, CS};
	char vpath[300], disk[300], small[300];
	vbs_ingest_disk d[2] = {{"sda", disk, NULL}, {"sdb", small, NULL}};
	vbs_ingest_opts o = {.vm = "vm", .disks = d, .n_disks = 2, .threads = 2};
	vbs_image *img = NULL, *im2 = NULL;
	vbs_vault *v;
	vbs_rp *rp = NULL;
	int r;

	snprintf(vpath, sizeof(vpath), "%s/v%d", dir, encrypt);
	snprintf(disk, sizeof(disk), "%s/disk.raw", dir);
	snprintf(small, sizeof(small), "%s/small.raw", dir);
	make_disk(disk, small);
	CHECK_EQ_INT(vbs_vault_init(vpath, &io, encrypt ? "pass word" : NULL), 0);
	CHECK_EQ_INT(vbs_vault_open(vpath, 0, &v), 0);
	if (encrypt)
		CHECK_EQ_INT(vbs_vault_unlock(v, "pass word"), 0);
	CHECK_EQ_INT(vbs_vault_open_env(v), 0);
	o.created_ns = 1700000000ll * 1000000000;
	r = vbs_ingest(v, &o, &rp);
	if (r < 0)
		fprintf(stderr, "ingest: %s\n", vbs_errmsg());
	CHECK_EQ_INT(r, 0);
	if (r < 0)
		return;
	/* Chunks 0 and 5 are one chunk; holes and zeros are none. */
	CHECK_EQ_INT(rp->disks[0].new_chunks, 5);
	vbs_vault_close(v);

	/* Read as the mount does: read-only, a small cache that must evict. */
	CHECK_EQ_INT(vbs_vault_open(vpath, 1, &v), 0);
	if (encrypt)
		CHECK_EQ_INT(vbs_vault_unlock(v, "pass word"), 0);
	vbs_vault_set_cache_size(v, 2 * CS);
	CHECK_EQ_INT(vbs_vault_open_env(v), 0);
	CHECK_EQ_INT(vbs_image_open(v, rp->serial, 0, &img), 0);
	CHECK_EQ_INT(vbs_image_open(v, rp->serial, 2, &im2), -ENOENT);
	if (img) {
		check_reads(img);
		check_segs(v, img);
		check_seek(img);
		vbs_image_close(img);
	}
	CHECK_EQ_INT(vbs_image_open(v, rp->serial, 1, &im2), 0);
	if (im2) {
		CHECK_EQ_INT(vbs_image_size(im2), SMALL);
		read_at(im2, small_want, SMALL, 0, CS);
		read_at(im2, small_want, SMALL, 500, 1000);
		read_at(im2, small_want, SMALL, SMALL, 1);
		vbs_image_close(im2);
	}
	vbs_vault_close(v);

	/* A point deleted while an image of it is open: -ENOENT, never other bytes. */
	CHECK_EQ_INT(vbs_vault_open(vpath, 0, &v), 0);
	if (encrypt)
		CHECK_EQ_INT(vbs_vault_unlock(v, "pass word"), 0);
	CHECK_EQ_INT(vbs_vault_open_env(v), 0);
	CHECK_EQ_INT(vbs_image_open(v, rp->serial, 0, &img), 0);
	if (img) {
		uint8_t buf[100];
		size_t got;

		read_at(img, want, SIZE, 0, 100);
		CHECK_EQ_INT(vbs_rp_delete(v, "vm", rp->id, VBS_DELETE_FORCE, 0), 0);
		CHECK_EQ_INT(vbs_image_read(img, buf, sizeof(buf), 0, &got), -ENOENT);
		vbs_image_close(img);
	}
	vbs_vault_close(v);
	vbs_rp_free(rp);
	free(want);
	free(small_want);
}

static void plain(void)
{
	run(0);
}

static void encrypted(void)
{
	run(1);
}

int main(void)
{
	mallopt(M_PERTURB, 0xa5);
	snprintf(dir, sizeof(dir), "%s/vmbak-image-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	RUN(plain);
	RUN(encrypted);
	return unit_finish();
}
