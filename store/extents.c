/* extents.c: changed-extents files ("OFFSET LENGTH [TYPE [DESCRIPTION]]" lines). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extents.h"

/* A number: decimal, or hex with 0x. No sign, no octal surprise from a leading zero. */
static int parse_num(const char **pp, const char *end, uint64_t *ret)
{
	const char *p = *pp;
	uint64_t x = 0;
	int base = 10, digits = 0;

	if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (; p < end; p++) {
		int dv;
		if (*p >= '0' && *p <= '9')
			dv = *p - '0';
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			dv = *p - 'a' + 10;
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			dv = *p - 'A' + 10;
		else
			break;
		if (__builtin_mul_overflow(x, (uint64_t)base, &x) ||
		    __builtin_add_overflow(x, (uint64_t)dv, &x))
			return -ERANGE;
		digits++;
	}
	if (!digits || (p < end && !isspace((unsigned char)*p)))
		return -EINVAL;
	*pp = p;
	*ret = x;
	return 0;
}

static const char *skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	return p;
}

static int cmp_extent(const void *a, const void *b)
{
	const vbs_extent *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Sorts e[0..n) and merges overlapping or touching extents. Returns the new count. */
static size_t merge(vbs_extent *e, size_t n)
{
	size_t w = 0;

	if (n == 0)
		return 0;
	qsort(e, n, sizeof(*e), cmp_extent);
	for (size_t i = 1; i < n; i++) {
		if (e[i].off <= e[w].off + e[w].len) {
			uint64_t a = e[w].off + e[w].len, b = e[i].off + e[i].len;
			e[w].len = (a > b ? a : b) - e[w].off;
		} else {
			e[++w] = e[i];
		}
	}
	return w + 1;
}

/* [off, off + len) aligned outwards to align and clipped to size, into *e. */
static void align_out(vbs_extent *e, uint64_t off, uint64_t last, uint64_t size, uint64_t align)
{
	e->off = off & ~(align - 1);
	last = last + align - 1 < last ? UINT64_MAX & ~(align - 1)
				       : (last + align - 1) & ~(align - 1);
	if (last > size)
		last = size;
	e->len = last - e->off;
}

int vbs_extents_normalize(const vbs_extent *in, size_t n, uint64_t size, uint64_t align,
			  vbs_extent **ret, size_t *ret_n)
{
	vbs_extent *e;
	size_t w = 0;

	if (align == 0 || (align & (align - 1)))
		return -EINVAL;
	/* One more than needed, so that an empty list is a valid pointer too. */
	if (n >= SIZE_MAX / sizeof(*e) || !(e = malloc((n + 1) * sizeof(*e))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint64_t last;

		if (in[i].len == 0)
			continue;
		if (__builtin_add_overflow(in[i].off, in[i].len, &last) || last > size) {
			free(e);
			return -ERANGE;
		}
		align_out(&e[w++], in[i].off, last, size, align);
	}
	*ret_n = merge(e, w);
	*ret = e;
	return 0;
}

int vbs_extents_parse(const char *text, size_t len, uint64_t size, uint64_t align,
		      vbs_extent **ret, size_t *ret_n, size_t *ret_line)
{
	const char *p = text, *end = text + len;
	vbs_extent *e = NULL;
	size_t n = 0, cap = 0, line = 0;
	int r = 0;

	if (align == 0 || (align & (align - 1)))
		return -EINVAL;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *q;
		uint64_t off, l, type = 1, last;

		if (!eol)
			eol = end;
		line++;
		q = skip_space(p, eol);
		if (q == eol || *q == '#')
			goto next;
		if ((r = parse_num(&q, eol, &off)) < 0)
			goto fail;
		q = skip_space(q, eol);
		if ((r = parse_num(&q, eol, &l)) < 0)
			goto fail;
		q = skip_space(q, eol);
		if (q < eol && (r = parse_num(&q, eol, &type)) < 0)
			goto fail;
		/* The rest of the line, if any, is a description: ignored. */
		if (!(type & 1) || l == 0)
			goto next;
		if (__builtin_add_overflow(off, l, &last) || last > size) {
			r = -ERANGE;
			goto fail;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			vbs_extent *ne;
			if (nc > SIZE_MAX / sizeof(*ne) || !(ne = realloc(e, nc * sizeof(*ne)))) {
				r = -ENOMEM;
				goto fail;
			}
			e = ne;
			cap = nc;
		}
		/* Align outwards to whole chunks. */
		align_out(&e[n++], off, last, size, align);
next:
		p = eol + 1;
	}
	n = merge(e, n);
	*ret = e;
	*ret_n = n;
	return 0;
fail:
	free(e);
	*ret_line = line;
	return r;
}
