/* fuzz_extents.c: changed-extents files (vbs_extents_parse), what --changed reads.
 *
 * Input: 8 bytes of disk size (big-endian, kept below 2^62), 1 byte of log2 alignment, then the
 * text. A parse that succeeds must give sorted, disjoint, non-empty extents, aligned to the
 * alignment (except where the disk ends), inside the disk.
 */
#include <stdint.h>
#include <stdlib.h>

#include "extents.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vbs_extent *e = NULL;
	size_t n = 0, line = 0;
	uint64_t disk, align;

	if (size < 9)
		return 0;
	disk = vbs_get64(data) >> 2;
	align = (uint64_t)1 << (data[8] % 32);
	if (vbs_extents_parse((const char *)data + 9, size - 9, disk, align, &e, &n, &line) < 0) {
		if (line == 0 && size > 9)
			abort(); /* an error names its line */
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (e[i].len == 0 || e[i].off % align || e[i].off + e[i].len > disk ||
		    e[i].off + e[i].len < e[i].off)
			abort();
		if ((e[i].off + e[i].len) % align && e[i].off + e[i].len != disk)
			abort();
		if (i && e[i].off <= e[i - 1].off + e[i - 1].len)
			abort();
	}
	free(e);
	return 0;
}
