/* store_test.c: the vault end to end through the store API: init, ingest (full, repeated,
 * changed extents, holes, zeros, odd sizes), read back, seek, damage detection. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "image.h"
#include "internal.h"
#include "seal.h"
#include "ingest.h"
#include "rp.h"
#include "unit.h"
#include "vault.h"

#define CS 4096u

static char dir[256];

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

static void write_at(const char *path, const void *buf, size_t len, off_t off)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, buf, len, off) == (ssize_t)len);
	close(fd);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	uint8_t *b;

	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	*len = (size_t)st.st_size;
	b = malloc(*len + 1);
	CHECK(b && pread(fd, b, *len, 0) == (ssize_t)*len);
	close(fd);
	return b;
}

/* Reads the whole image in odd-sized pieces and compares with the file. */
static void compare(vbs_vault *v, const vbs_rp *rp, unsigned disk, const char *path)
{
	vbs_image *img;
	size_t len, got, step = 7777;
	uint8_t *want = slurp(path, &len), *buf = malloc(len + step);

	CHECK(vbs_image_open(v, rp->serial, disk, &img) == 0);
	CHECK(vbs_image_size(img) == len);
	for (size_t off = 0; off < len; off += step) {
		CHECK(vbs_image_read(img, buf + off, step, off, &got) == 0);
		CHECK(got == (off + step <= len ? step : len - off));
	}
	CHECK(memcmp(buf, want, len) == 0);
	CHECK(vbs_image_read(img, buf, 10, len, &got) == 0 && got == 0);
	vbs_image_close(img);
	free(want);
	free(buf);
}

static vbs_rp *ingest(vbs_vault *v, const char *vm, const char *name, const char *path,
		      const char *changed)
{
	vbs_ingest_disk d = {name, path, changed};
	vbs_ingest_opts o = {.vm = vm, .disks = &d, .n_disks = 1, .threads = 2};
	vbs_rp *rp = NULL;
	int r = vbs_ingest(v, &o, &rp);

	if (r < 0)
		fprintf(stderr, "ingest: %s\n", vbs_errmsg());
	CHECK(r == 0);
	return rp;
}

/* Frames of 64 KiB chunks: incompressible data is stored as it is (told from samples), data
 * that compresses anywhere the samples look is compressed, and both decode to the input. */
static void frames(int encrypt)
{
	enum { LEN = 65536 };
	static uint8_t in[LEN], frame[LEN + 1024], out[LEN];
	vbs_init_opts io = {encrypt, LEN};
	uint8_t id[VBS_ID_LEN];
	size_t flen, olen;
	char vpath[300];
	vbs_vault *v;

	snprintf(vpath, sizeof(vpath), "%s/frames%d", dir, encrypt);
	CHECK(vbs_vault_init(vpath, &io, encrypt ? "pass word" : NULL) == 0);
	CHECK(vbs_vault_open(vpath, 0, &v) == 0);
	CHECK(!encrypt || vbs_vault_unlock(v, "pass word") == 0);

	for (int kind = 0; kind < 3; kind++) {
		fill(in, LEN, 7 + kind);
		if (kind == 1) /* text-like all through */
			for (size_t i = 0; i < LEN; i++)
				in[i] = "the quick brown fox "[i % 20];
		if (kind == 2) /* random start, compressible from the middle on */
			memset(in + LEN / 2, 'a', LEN / 2);
		CHECK(vbs_frame_max(LEN) <= sizeof(frame));
		CHECK(vbs_chunk_id(v, in, LEN, id) == 0);
		CHECK(vbs_chunk_encode(v, id, in, LEN, 1, frame, sizeof(frame), &flen) == 0);
		CHECK(((frame[1] & VBS_FRAME_ZSTD) != 0) == (kind != 0));
		CHECK(kind == 0 ? flen >= LEN : flen < LEN / 2 + 1024);
		CHECK(vbs_chunk_decode(v, id, frame, flen, out, sizeof(out), &olen) == 0);
		CHECK(olen == LEN && memcmp(in, out, LEN) == 0);
	}

	/* 256 incompressible chunks: each frame fits 16 LMDB pages (its tail aside), not 17,
	 * and reads back whole. */
	{
		enum { N = 256 };
		char disk[300], db[320];
		uint8_t *big = malloc((size_t)N * LEN), *back = malloc((size_t)N * LEN);
		vbs_image *im;
		vbs_rp *rp;
		struct stat st;
		size_t got;

		CHECK(big && back);
		fill(big, (size_t)N * LEN, 40 + encrypt);
		snprintf(disk, sizeof(disk), "%s/frames%d.raw", dir, encrypt);
		write_at(disk, big, (size_t)N * LEN, 0);
		CHECK(vbs_vault_open_env(v) == 0);
		rp = ingest(v, "vm9", "os", disk, NULL);
		CHECK(rp && rp->disks[0].new_chunks == N);
		snprintf(db, sizeof(db), "%s/data.mdb", vpath);
		CHECK(stat(db, &st) == 0 && st.st_size < (off_t)N * 17 * 4096);
		CHECK(vbs_image_open(v, rp->serial, 0, &im) == 0);
		CHECK(vbs_image_read(im, back, (size_t)N * LEN, 0, &got) == 0);
		CHECK(got == (size_t)N * LEN && memcmp(big, back, got) == 0);
		vbs_image_close(im);
		vbs_rp_free(rp);
		free(big);
		free(back);
	}
	vbs_vault_close(v);
}

struct put_arg {
	uint64_t key;
	const char *json;
};

static int put_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	const struct put_arg *a = arg;
	uint8_t k[8];

	vbs_put64(k, a->key);
	return vbs_sput(v, txn, v->dbi_rps, VBS_DB_RPS, k, 8, a->json, strlen(a->json), 0);
}

/* Records that open (sealed with the vault's key) but lie: their serial is not their key's
 * (once a double free: the record was freed and then freed again by every caller), their id
 * is a path. Both must give -EBADMSG, nothing else, and nothing freed twice (asan). */
static void damaged_records(vbs_vault *v, const vbs_rp *a)
{
	char json[1024];
	struct put_arg pa = {a->serial + 1000, json};
	vbs_rp *rp = NULL;

	CHECK(vbs_rp_id_valid("2026-11-23T05:40:12Z"));
	CHECK(vbs_rp_id_valid("2026-11-23T05:40:12Z-07"));
	CHECK(!vbs_rp_id_valid("/etc"));
	CHECK(!vbs_rp_id_valid("2026-11-23T05:40:12Z/.."));
	CHECK(!vbs_rp_id_valid("2026-11-23T05:40:12"));
	CHECK(!vbs_rp_id_valid("../../2026-11-23T05:4"));
	CHECK(!vbs_rp_id_valid(""));

	snprintf(json, sizeof(json),
		 "{\"vm\": \"vm1\", \"id\": \"2026-11-23T05:40:12Z\", \"serial\": %llu, "
		 "\"vm_serial\": 1, \"created_ns\": 1, \"retain_until\": 0, \"parent\": \"\", "
		 "\"chunk_size\": %u, \"disks\": [{\"name\": \"os\", \"size\": 4096, "
		 "\"lineage\": 1, \"data_chunks\": 0, \"read_bytes\": 0, \"new_chunks\": 0, "
		 "\"new_bytes\": 0}]}",
		 (unsigned long long)a->serial, CS);
	CHECK(vbs_write(v, put_fn, &pa) == 0);
	CHECK(vbs_rp_get_serial(v, a->serial + 1000, &rp) == -EBADMSG && rp == NULL);
	CHECK(strstr(vbs_errmsg(), "damaged") != NULL);

	snprintf(json, sizeof(json),
		 "{\"vm\": \"vm1\", \"id\": \"/etc\", \"serial\": %llu, "
		 "\"vm_serial\": 1, \"created_ns\": 1, \"retain_until\": 0, \"parent\": \"\", "
		 "\"chunk_size\": %u, \"disks\": [{\"name\": \"os\", \"size\": 4096, "
		 "\"lineage\": 1, \"data_chunks\": 0, \"read_bytes\": 0, \"new_chunks\": 0, "
		 "\"new_bytes\": 0}]}",
		 (unsigned long long)(a->serial + 1001), CS);
	pa.key = a->serial + 1001;
	CHECK(vbs_write(v, put_fn, &pa) == 0);
	CHECK(vbs_rp_get_serial(v, a->serial + 1001, &rp) == -EBADMSG && rp == NULL);

	/* A value moved to another key does not open. */
	{
		vbs_rp *x = NULL;
		CHECK(vbs_rp_get_serial(v, a->serial, &x) == 0);
		vbs_rp_free(x);
	}
}

static void run(int encrypt)
{
	char vpath[300], img[300], img2[300], ext[300];
	vbs_init_opts io = {encrypt, CS};
	vbs_vault *v;
	vbs_rp *a, *b, *c, *d, *e;
	uint8_t buf[3 * CS];
	vbs_image *im;
	uint64_t pos;

	snprintf(vpath, sizeof(vpath), "%s/vault%d", dir, encrypt);
	snprintf(img, sizeof(img), "%s/disk%d.raw", dir, encrypt);
	snprintf(img2, sizeof(img2), "%s/disk%d-b.raw", dir, encrypt);
	snprintf(ext, sizeof(ext), "%s/ext%d", dir, encrypt);
	CHECK(vbs_vault_init(vpath, &io, encrypt ? "pass word" : NULL) == 0);
	CHECK(vbs_vault_init(vpath, &io, "x") == -EEXIST);

	/* A disk of 100 chunks + 333 bytes: data, a hole, a zero chunk, repeats, a short tail. */
	CHECK(truncate(img, 100 * CS + 333) == 0 || errno == ENOENT);
	{
		int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK(fd >= 0 && ftruncate(fd, 100 * CS + 333) == 0);
		close(fd);
	}
	fill(buf, sizeof(buf), 1);
	write_at(img, buf, 3 * CS, 0);	      /* chunks 0-2 */
	write_at(img, buf, CS, 10 * CS);      /* chunk 10 = chunk 0: dedup */
	memset(buf, 0, CS);
	write_at(img, buf, CS, 20 * CS);      /* chunk 20 allocated but zero */
	fill(buf, 333, 9);
	write_at(img, buf, 333, 100 * CS);    /* short tail */

	CHECK(vbs_vault_open(vpath, 0, &v) == 0);
	CHECK(vbs_vault_needs_passphrase(v) == !!encrypt);
	if (encrypt) {
		CHECK(vbs_vault_unlock(v, "wrong") == -ENOKEY);
		CHECK(vbs_vault_unlock(v, "pass word") == 0);
	}
	CHECK(vbs_vault_open_env(v) == 0);
	a = ingest(v, "vm1", "os", img, NULL);
	CHECK(a->disks[0].data_chunks == 5); /* 0,1,2,10,100 */
	CHECK(a->disks[0].new_chunks == 4);
	CHECK(a->parent[0] == '\0');
	compare(v, a, 0, img);

	/* SEEK_DATA / SEEK_HOLE at chunk granularity. */
	CHECK(vbs_image_open(v, a->serial, 0, &im) == 0);
	CHECK(vbs_image_seek(im, 0, SEEK_DATA, &pos) == 0 && pos == 0);
	CHECK(vbs_image_seek(im, 0, SEEK_HOLE, &pos) == 0 && pos == 3 * CS);
	CHECK(vbs_image_seek(im, 3 * CS + 5, SEEK_DATA, &pos) == 0 && pos == 10 * CS);
	CHECK(vbs_image_seek(im, 11 * CS, SEEK_DATA, &pos) == 0 && pos == 100 * CS);
	CHECK(vbs_image_seek(im, 100 * CS + 1, SEEK_HOLE, &pos) == 0 && pos == 100 * CS + 333);
	CHECK(vbs_image_seek(im, 100 * CS + 333, SEEK_DATA, &pos) == -ENXIO);
	CHECK(vbs_image_data_bytes(im) == 5 * CS); /* whole chunks, clipped to the size */
	vbs_image_close(im);

	/* A disk the point does not have: ENOENT, and the message names the point (it was read
	 * after the point was freed; M_PERTURB in main() makes freed memory garbage). */
	im = NULL;
	CHECK(vbs_image_open(v, a->serial, 7, &im) == -ENOENT && im == NULL);
	CHECK(strstr(vbs_errmsg(), a->id) != NULL);

	/* The same disk again: nothing new, nothing changed in the index. */
	b = ingest(v, "vm1", "os", img, NULL);
	CHECK(strcmp(b->id, a->id) > 0);
	CHECK(strcmp(b->parent, a->id) == 0);
	CHECK(b->disks[0].new_chunks == 0);
	CHECK(b->disks[0].lineage == a->disks[0].lineage);
	compare(v, b, 0, img);

	/* Change it: rewrite chunk 1, zero chunk 2 (punch), add chunk 50. */
	{
		uint8_t z[CS] = {0};
		fill(buf, CS, 2);
		write_at(img, buf, CS, 1 * CS);
		write_at(img, z, CS, 2 * CS);
		fill(buf, CS, 3);
		write_at(img, buf, CS, 50 * CS);
	}
	c = ingest(v, "vm1", "os", img, NULL);
	CHECK(c->disks[0].data_chunks == 5); /* 0,1,10,50,100 */
	compare(v, c, 0, img);
	/* Earlier points are untouched by later ones. */
	{
		uint8_t one[CS];
		size_t got;
		CHECK(vbs_image_open(v, a->serial, 0, &im) == 0);
		CHECK(vbs_image_read(im, one, CS, 2 * CS, &got) == 0 && got == CS);
		fill(buf, sizeof(buf), 1);
		CHECK(memcmp(one, buf + 2 * CS, CS) == 0);
		vbs_image_close(im);
	}

	/* Changed extents: only chunk 60 changes; the file says so (plus a clean line). */
	fill(buf, CS, 4);
	write_at(img, buf, CS, 60 * CS);
	{
		FILE *f = fopen(ext, "w");
		CHECK(f != NULL);
		fprintf(f, "# nbdinfo-style\n%u %u 1 dirty\n0 4096 0 clean\n", 60 * CS + 10, 100u);
		fclose(f);
	}
	d = ingest(v, "vm1", "os", img, ext);
	CHECK(d->disks[0].incremental == 1);
	CHECK(d->disks[0].read_bytes == CS);
	CHECK(d->disks[0].data_chunks == 6);
	compare(v, d, 0, img);
	/* c does not see chunk 60 (it came later). */
	{
		uint8_t one[CS], z[CS] = {0};
		size_t got;
		CHECK(vbs_image_open(v, c->serial, 0, &im) == 0);
		CHECK(vbs_image_read(im, one, CS, 60 * CS, &got) == 0 && got == CS);
		CHECK(memcmp(one, z, CS) == 0);
		vbs_image_close(im);
	}

	/* A second VM sharing chunks, size not a multiple of 512. */
	{
		int fd = open(img2, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK(fd >= 0 && ftruncate(fd, 1000003) == 0);
		close(fd);
		fill(buf, sizeof(buf), 1);
		write_at(img2, buf, 3 * CS, 1000003 - 3 * CS);
	}
	e = ingest(v, "vm2", "data", img2, NULL);
	compare(v, e, 0, img2);

	/* A disk given with --changed but no base is refused with a message. */
	{
		vbs_ingest_disk dd = {"os", img, ext};
		vbs_ingest_opts o = {.vm = "vm3", .disks = &dd, .n_disks = 1};
		vbs_rp *x = NULL;
		CHECK(vbs_ingest(v, &o, &x) == -EINVAL && x == NULL);
		CHECK(strstr(vbs_errmsg(), "no earlier") != NULL);
	}
	/* Listing. */
	{
		vbs_rp **list;
		size_t n;
		vbs_name_entry *vms;
		CHECK(vbs_rp_list(v, NULL, &list, &n) == 0 && n == 5);
		CHECK(strcmp(list[0]->vm, "vm1") == 0 && strcmp(list[4]->vm, "vm2") == 0);
		vbs_rp_list_free(list, n);
		CHECK(vbs_vm_list(v, &vms, &n) == 0 && n == 2);
		free(vms);
	}
	damaged_records(v, a);
	vbs_rp_free(a);
	vbs_rp_free(b);
	vbs_rp_free(c);
	vbs_rp_free(d);
	vbs_rp_free(e);
	vbs_vault_close(v);
	frames(encrypt);
}

int main(void)
{
	mallopt(M_PERTURB, 0xa5); /* freed memory is overwritten: a use after free shows */
	snprintf(dir, sizeof(dir), "%s/vmbak-store-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	run(0);
	run(1);
	return unit_finish();
}
