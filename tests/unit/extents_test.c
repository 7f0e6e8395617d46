/* extents_test.c: changed extents, from text (vbs_extents_parse) and from memory
 * (vbs_extents_normalize, the dirty bitmap of a running VM). */
#include <errno.h>

#include "extents.h"
#include "unit.h"

static void parse_lines(void)
{
	const char text[] = "# nbdinfo --map\n"
			    "0 4096 1 dirty\n"
			    "65536 65536 0 clean\n"
			    "0x20000 10 1\n"
			    "\n";
	vbs_extent *e = NULL;
	size_t n = 0, line = 0;

	CHECK_EQ_INT(vbs_extents_parse(text, sizeof(text) - 1, 1 << 20, 16384, &e, &n, &line), 0);
	CHECK_EQ_INT(n, 2);
	CHECK(e && e[0].off == 0 && e[0].len == 16384);
	CHECK(e && e[1].off == 0x20000 && e[1].len == 16384);
	free(e);
	CHECK_EQ_INT(vbs_extents_parse("5 x\n", 4, 1 << 20, 16384, &e, &n, &line), -EINVAL);
	CHECK_EQ_INT(line, 1);
}

static void normalize(void)
{
	/* Unsorted, overlapping, touching, empty and unaligned, as a bitmap may give them. */
	const vbs_extent in[] = {{65536, 65536}, {0, 1},   {131072, 100},
				 {70000, 10},	 {500, 0}, {1048576 - 1, 1}};
	vbs_extent *e = NULL;
	size_t n = 0;

	CHECK_EQ_INT(vbs_extents_normalize(in, 6, 1 << 20, 16384, &e, &n), 0);
	CHECK_EQ_INT(n, 3);
	CHECK(e && e[0].off == 0 && e[0].len == 16384);
	CHECK(e && e[1].off == 65536 && e[1].len == 65536 + 16384);
	CHECK(e && e[2].off == 1048576 - 16384 && e[2].len == 16384);
	free(e);
	/* Nothing changed: a valid, empty list, never NULL. */
	e = NULL;
	CHECK_EQ_INT(vbs_extents_normalize(NULL, 0, 1 << 20, 16384, &e, &n), 0);
	CHECK(e != NULL);
	CHECK_EQ_INT(n, 0);
	free(e);
	/* Beyond the end, an overflow, a bad alignment. */
	{
		const vbs_extent past[] = {{1048576 - 10, 11}};
		const vbs_extent wrap[] = {{UINT64_MAX - 5, 10}};

		CHECK_EQ_INT(vbs_extents_normalize(past, 1, 1 << 20, 16384, &e, &n), -ERANGE);
		CHECK_EQ_INT(vbs_extents_normalize(wrap, 1, 1 << 20, 16384, &e, &n), -ERANGE);
		CHECK_EQ_INT(vbs_extents_normalize(past, 1, 1 << 20, 3, &e, &n), -EINVAL);
	}
	/* A disk whose size is not a multiple of the alignment: clipped to the size. */
	{
		const vbs_extent tail[] = {{100000, 1}};

		CHECK_EQ_INT(vbs_extents_normalize(tail, 1, 100001, 16384, &e, &n), 0);
		CHECK(n == 1 && e[0].off == 98304 && e[0].len == 100001 - 98304);
		free(e);
	}
}

int main(void)
{
	RUN(parse_lines);
	RUN(normalize);
	return unit_finish();
}
