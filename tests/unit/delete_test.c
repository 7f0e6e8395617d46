/* delete_test.c: deleting points of the versioned index, and gc, as a randomized property test.
 *
 * For several seeds: a disk goes through points that change random chunks (new data, zeros
 * that become tombstones, copies of other chunks, the same data again), ingested in full or
 * with --changed; then points are deleted in random order (oldest, middle, newest, forced)
 * with new ingests and gc runs in between. After every step every surviving point must read
 * back exactly its source, a deleted point must read as -ENOENT, and gc must leave exactly the
 * chunks the survivors need (a second gc frees nothing; with no point left, no chunk).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gc.h"
#include "image.h"
#include "ingest.h"
#include "lifecycle.h"
#include "rp.h"
#include "unit.h"
#include "vault.h"

#define CS 4096u
#define NCHUNKS 24
#define SIZE (NCHUNKS * CS)
#define MAXPTS 64

static char dir[256];
static uint32_t rnd_state;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

struct pt {
	char id[VBS_RP_ID_MAX];
	uint64_t serial;
	uint8_t *data; /* SIZE bytes: what the point must read */
	int alive;
};

static struct pt pts[MAXPTS];
static int npts;
static uint8_t disk[SIZE];

static void check_point(vbs_vault *v, const struct pt *p)
{
	vbs_image *img = NULL;
	uint8_t *buf = malloc(SIZE);
	size_t got = 0;
	int r = vbs_image_open(v, p->serial, 0, &img);

	if (!p->alive) {
		CHECK(r == -ENOENT);
		free(buf);
		return;
	}
	CHECK_EQ_INT(r, 0);
	if (r == 0) {
		CHECK_EQ_INT(vbs_image_read(img, buf, SIZE, 0, &got), 0);
		CHECK_EQ_INT(got, SIZE);
		if (memcmp(buf, p->data, SIZE) != 0)
			fprintf(stderr, "point %s reads wrong bytes\n", p->id);
		CHECK(memcmp(buf, p->data, SIZE) == 0);
	}
	vbs_image_close(img);
	free(buf);
}

static void check_all(vbs_vault *v)
{
	for (int i = 0; i < npts; i++)
		check_point(v, &pts[i]);
}

/* Changes a few chunks of disk, writes the source file and the changed-extents file. */
static void mutate(const char *src, const char *ext)
{
	FILE *f = fopen(ext, "w");
	int fd;

	CHECK(f != NULL);
	for (int k = 1 + (int)(rnd() % 4); k > 0; k--) {
		unsigned n = rnd() % NCHUNKS, how = rnd() % 4;
		uint8_t *c = disk + (size_t)n * CS;

		if (how == 0) {
			memset(c, 0, CS); /* a tombstone where there was data */
		} else if (how == 1) {
			memcpy(c, disk + (size_t)(rnd() % NCHUNKS) * CS, CS); /* a dedup */
		} else {
			for (unsigned i = 0; i < CS; i += 4) {
				uint32_t x = rnd();
				memcpy(c + i, &x, 4);
			}
		}
		fprintf(f, "%u %u\n", n * CS, CS);
	}
	fclose(f);
	fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && pwrite(fd, disk, SIZE, 0) == SIZE);
	close(fd);
}

static void add_point(vbs_vault *v, const char *src, const char *ext)
{
	vbs_ingest_disk d = {"sda", src, NULL};
	vbs_ingest_opts o = {.vm = "vm", .disks = &d, .n_disks = 1, .threads = 1};
	vbs_rp *rp = NULL;
	int have_prev = 0, r;

	for (int i = 0; i < npts; i++)
		have_prev |= pts[i].alive;
	if (npts == MAXPTS)
		return;
	mutate(src, ext);
	if (have_prev && rnd() % 2)
		d.changed = ext;
	/* Distinct, increasing times: ids in order whatever the clock does. */
	o.created_ns = (int64_t)(1700000000 + npts * 60) * 1000000000;
	r = vbs_ingest(v, &o, &rp);
	if (r < 0)
		fprintf(stderr, "ingest: %s\n", vbs_errmsg());
	CHECK_EQ_INT(r, 0);
	if (r < 0)
		return;
	snprintf(pts[npts].id, sizeof(pts[npts].id), "%s", rp->id);
	pts[npts].serial = rp->serial;
	pts[npts].data = malloc(SIZE);
	memcpy(pts[npts].data, disk, SIZE);
	pts[npts].alive = 1;
	npts++;
	vbs_rp_free(rp);
}

static void gc_check(vbs_vault *v, int expect_empty)
{
	vbs_gc_stats s, s2;

	CHECK_EQ_INT(vbs_gc(v, 0, &s), 0);
	CHECK_EQ_INT(s.pinned, 0);
	CHECK_EQ_INT(vbs_gc(v, 0, &s2), 0);
	CHECK_EQ_INT(s2.freed, 0);
	CHECK_EQ_INT(s2.chunks, s2.referenced);
	if (expect_empty)
		CHECK_EQ_INT(s2.chunks, 0);
	check_all(v);
}

static void trial(unsigned seed)
{
	char vpath[300], src[300], ext[300];
	vbs_init_opts io = {0, CS};
	vbs_vault *v = NULL;
	int deletes = 0;

	rnd_state = seed * 2654435761u + 7;
	npts = 0;
	memset(disk, 0, sizeof(disk));
	for (unsigned i = 0; i < SIZE; i += 4) {
		uint32_t x = rnd();
		memcpy(disk + i, &x, 4);
	}
	memset(disk + 5 * CS, 0, 3 * CS); /* a hole from the start */
	snprintf(vpath, sizeof(vpath), "%s/v%u", dir, seed);
	snprintf(src, sizeof(src), "%s/src%u", dir, seed);
	snprintf(ext, sizeof(ext), "%s/ext%u", dir, seed);
	CHECK_EQ_INT(vbs_vault_init(vpath, &io, NULL), 0);
	CHECK_EQ_INT(vbs_vault_open(vpath, 0, &v), 0);
	CHECK_EQ_INT(vbs_vault_open_env(v), 0);
	for (int i = 0; i < 8; i++)
		add_point(v, src, ext);
	check_all(v);
	for (int step = 0; step < 40; step++) {
		int alive[MAXPTS], na = 0, r;

		for (int i = 0; i < npts; i++)
			if (pts[i].alive)
				alive[na++] = i;
		if (na == 0 || rnd() % 5 == 0) {
			add_point(v, src, ext);
		} else {
			struct pt *p = &pts[alive[rnd() % na]];
			int newest = p == &pts[alive[na - 1]];

			/* Unforced, the newest point is refused. */
			if (newest)
				CHECK_EQ_INT(vbs_rp_delete(v, "vm", p->id, 0, 0), -EPERM);
			r = vbs_rp_delete(v, "vm", p->id, newest ? VBS_DELETE_FORCE : 0, 0);
			CHECK_EQ_INT(r, 0);
			p->alive = 0;
			deletes++;
			CHECK_EQ_INT(vbs_rp_delete(v, "vm", p->id, VBS_DELETE_FORCE, 0), -ENOENT);
		}
		check_all(v);
		if (rnd() % 4 == 0)
			gc_check(v, 0);
	}
	for (int i = 0; i < npts; i++)
		if (pts[i].alive) {
			CHECK_EQ_INT(vbs_rp_delete(v, "vm", pts[i].id, VBS_DELETE_FORCE, 0), 0);
			pts[i].alive = 0;
		}
	gc_check(v, 1);
	/* The VM is gone; a new ingest starts afresh. */
	for (int i = 0; i < npts; i++) {
		free(pts[i].data);
		pts[i].data = NULL;
	}
	npts = 0;
	add_point(v, src, ext);
	check_all(v);
	vbs_vault_close(v);
	for (int i = 0; i < MAXPTS; i++) {
		free(pts[i].data);
		pts[i].data = NULL;
	}
	(void)deletes;
}

static void test_random(void)
{
	for (unsigned seed = 1; seed <= 4; seed++)
		trial(seed);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/vmbak-delete-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_random);
	if (unit_failures == 0) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", dir);
	}
	return unit_finish();
}
