/* gc_test.c: garbage collection (store/gc.c) through a real vault: the chunks only a deleted
 * point used are freed, chunks another point shares are kept, and chunks an ingest in progress
 * pinned (vbs_pins_take, the hook of its puts) are kept until its job ends. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunkstore.h"
#include "gc.h"
#include "image.h"
#include "ingest.h"
#include "jobs.h"
#include "lifecycle.h"
#include "pins.h"
#include "rp.h"
#include "unit.h"
#include "vault.h"

#define CS 4096u
#define N 10u /* chunks of a disk */

static char dir[256];
static uint8_t disk_a[N * CS], disk_b[N * CS];

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

static vbs_rp *ingest(vbs_vault *v, const char *vm, const uint8_t *data, int64_t t)
{
	char path[300];
	vbs_ingest_disk d = {"sda", path, NULL};
	vbs_ingest_opts o = {.vm = vm, .disks = &d, .n_disks = 1, .threads = 1, .created_ns = t};
	vbs_rp *rp = NULL;
	int fd, r;

	snprintf(path, sizeof(path), "%s/%s.raw", dir, vm);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && pwrite(fd, data, N * CS, 0) == (ssize_t)(N * CS));
	close(fd);
	r = vbs_ingest(v, &o, &rp);
	if (r < 0)
		fprintf(stderr, "ingest: %s\n", vbs_errmsg());
	CHECK_EQ_INT(r, 0);
	return rp;
}

static void reads_back(vbs_vault *v, const vbs_rp *rp, const uint8_t *data)
{
	static uint8_t buf[N * CS];
	vbs_image *img;
	size_t got = 0;

	CHECK_EQ_INT(vbs_image_open(v, rp->serial, 0, &img), 0);
	if (!img)
		return;
	CHECK_EQ_INT(vbs_image_read(img, buf, sizeof(buf), 0, &got), 0);
	CHECK(got == N * CS && memcmp(buf, data, got) == 0);
	vbs_image_close(img);
}

static uint64_t stored_chunks(vbs_vault *v)
{
	vbs_vault_stats s;

	CHECK_EQ_INT(vbs_vault_stats_get(v, &s), 0);
	return s.chunks;
}

/* Chunks of an ingest in progress: encoded here and put with pins, as ingest.c does. */
struct pending {
	uint8_t data[3][CS];
	uint8_t ids[3][VBS_ID_LEN];
	uint8_t frames[3][CS + 64];
	vbs_cs_item items[3];
};

static void make_pending(vbs_vault *v, struct pending *p, unsigned seed)
{
	for (int i = 0; i < 3; i++) {
		size_t flen = 0;

		fill(p->data[i], CS, seed + (unsigned)i);
		CHECK_EQ_INT(vbs_chunk_id(v, p->data[i], CS, p->ids[i]), 0);
		CHECK_EQ_INT(vbs_chunk_encode(v, p->ids[i], p->data[i], CS, 1, p->frames[i],
					      sizeof(p->frames[i]), &flen),
			     0);
		p->items[i] = (vbs_cs_item){p->ids[i], p->frames[i], flen, CS};
	}
}

static int present(vbs_vault *v, const uint8_t (*ids)[VBS_ID_LEN], size_t n)
{
	uint8_t pr[8];
	int all = 1;

	CHECK_EQ_INT(vbs_cs_exists(v, NULL, n, ids, pr), 0);
	for (size_t i = 0; i < n; i++)
		all &= pr[i];
	return all;
}

static void gc_marks(void)
{
	vbs_init_opts io = {0, CS};
	char vpath[300];
	vbs_gc_stats s;
	vbs_vault *v;
	vbs_rp *a, *b;
	struct pending p;
	uint64_t job, added = 0, added_bytes = 0;

	/* B shares its first half with A. */
	fill(disk_a, sizeof(disk_a), 1);
	fill(disk_b, sizeof(disk_b), 2);
	memcpy(disk_b, disk_a, N / 2 * CS);

	snprintf(vpath, sizeof(vpath), "%s/v", dir);
	CHECK_EQ_INT(vbs_vault_init(vpath, &io, NULL), 0);
	CHECK_EQ_INT(vbs_vault_open(vpath, 0, &v), 0);
	CHECK_EQ_INT(vbs_vault_open_env(v), 0);
	a = ingest(v, "va", disk_a, 1700000000ll * 1000000000);
	b = ingest(v, "vb", disk_b, 1700000060ll * 1000000000);
	if (!a || !b)
		goto out;
	CHECK_EQ_INT(stored_chunks(v), N + N / 2);

	/* Everything referenced: nothing to free. */
	CHECK_EQ_INT(vbs_gc(v, 0, &s), 0);
	CHECK_EQ_INT(s.chunks, N + N / 2);
	CHECK_EQ_INT(s.referenced, N + N / 2);
	CHECK_EQ_INT(s.freed, 0);

	/* A deleted: its own half goes, the half B shares stays. */
	CHECK_EQ_INT(vbs_rp_delete(v, "va", a->id, VBS_DELETE_FORCE, 0), 0);
	CHECK_EQ_INT(vbs_gc(v, 0, &s), 0);
	CHECK_EQ_INT(s.chunks, N + N / 2);
	CHECK_EQ_INT(s.referenced, N);
	CHECK_EQ_INT(s.freed, N / 2);
	CHECK(s.freed_bytes >= N / 2 * CS);
	CHECK_EQ_INT(stored_chunks(v), N);
	reads_back(v, b, disk_b);

	/* An ingest in progress: its chunks are pinned in the commit that stores them, and gc
	 * keeps them while its job runs, though no point refers to them. */
	make_pending(v, &p, 100);
	CHECK_EQ_INT(vbs_job_begin(v, "ingest", "vx", &job), 0);
	{
		vbs_pin_batch pins = {job, p.items, 2, NULL, 0};

		CHECK_EQ_INT(vbs_cs_put(v, p.items, 2, VBS_CS_LAZY, vbs_pins_take, &pins, &added,
					&added_bytes),
			     0);
		CHECK_EQ_INT(added, 2);
	}
	CHECK_EQ_INT(vbs_gc(v, 0, &s), 0);
	CHECK_EQ_INT(s.pinned, 2);
	CHECK_EQ_INT(s.freed, 0);
	CHECK(present(v, (const uint8_t(*)[VBS_ID_LEN])p.ids, 2));

	/* A reused chunk that is gone by the commit: -ESTALE, and nothing of the put is kept. */
	{
		uint8_t gone[1][VBS_ID_LEN];
		vbs_pin_batch pins = {job, p.items + 2, 1, (const uint8_t(*)[VBS_ID_LEN])gone, 1};

		memset(gone, 0x77, sizeof(gone));
		CHECK_EQ_INT(vbs_cs_put(v, p.items + 2, 1, VBS_CS_LAZY, vbs_pins_take, &pins,
					&added, &added_bytes),
			     -ESTALE);
		CHECK(!present(v, (const uint8_t(*)[VBS_ID_LEN])p.ids + 2, 1));
		CHECK_EQ_INT(stored_chunks(v), N + 2);
	}
	/* A reused chunk still there is pinned with the batch. */
	{
		vbs_pin_batch pins = {job, p.items + 2, 1, (const uint8_t(*)[VBS_ID_LEN])p.ids, 1};

		CHECK_EQ_INT(vbs_cs_put(v, p.items + 2, 1, VBS_CS_SYNC, vbs_pins_take, &pins,
					&added, &added_bytes),
			     0);
		CHECK_EQ_INT(added, 1);
	}
	CHECK_EQ_INT(vbs_gc(v, 0, &s), 0);
	CHECK_EQ_INT(s.pinned, 3);
	CHECK_EQ_INT(s.freed, 0);

	/* The job ends without a point: the next gc drops its pins and frees its chunks. */
	CHECK_EQ_INT(vbs_job_end(v, job, VBS_JOB_FAILED, 0, 0, "cut short"), 0);
	CHECK_EQ_INT(vbs_gc(v, 0, &s), 0);
	CHECK(s.pins_released >= 3);
	CHECK_EQ_INT(s.pinned, 0);
	CHECK_EQ_INT(s.freed, 3);
	CHECK(!present(v, (const uint8_t(*)[VBS_ID_LEN])p.ids, 1));
	CHECK_EQ_INT(stored_chunks(v), N);
	reads_back(v, b, disk_b);

	/* B deleted too: the vault is empty of chunks. */
	CHECK_EQ_INT(vbs_rp_delete(v, "vb", b->id, VBS_DELETE_FORCE, 0), 0);
	CHECK_EQ_INT(vbs_gc(v, 0, &s), 0);
	CHECK_EQ_INT(s.freed, N);
	CHECK_EQ_INT(stored_chunks(v), 0);
out:
	vbs_rp_free(a);
	vbs_rp_free(b);
	vbs_vault_close(v);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "%s/vmbak-gc-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	RUN(gc_marks);
	return unit_finish();
}
