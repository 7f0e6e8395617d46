/* ino.c: inode numbers computed from ids (see ino.h). */
#include <errno.h>

#include "ino.h"

static int kind_has_sub(enum vbf_kind kind)
{
	return kind == VBF_IMAGE || kind == VBF_KEY || kind == VBF_FILE;
}

static int kind_valid(uint64_t kind)
{
	return kind >= VBF_VM && kind <= VBF_FILE;
}

int vbf_ino_make(enum vbf_kind kind, uint64_t id, unsigned sub, uint64_t *ret)
{
	if (!kind_valid(kind))
		return -EINVAL;
	if (sub != 0 && !kind_has_sub(kind))
		return -EINVAL;
	if (id > VBF_INO_ID_MAX || sub > VBF_INO_SUB_MAX)
		return -EOVERFLOW;
	*ret = (uint64_t)kind << VBF_INO_KIND_SHIFT | id << VBF_INO_ID_SHIFT | sub;
	return 0;
}

int vbf_ino_parse(uint64_t ino, vbf_node *ret)
{
	uint64_t kind = ino >> VBF_INO_KIND_SHIFT;
	unsigned sub = (unsigned)(ino & VBF_INO_SUB_MAX);

	if (ino == VBF_INO_ROOT) {
		*ret = (vbf_node){.kind = VBF_ROOT};
		return 0;
	}
	if (!kind_valid(kind) || (sub != 0 && !kind_has_sub((enum vbf_kind)kind)))
		return -ENOENT;
	*ret = (vbf_node){
	    .kind = (enum vbf_kind)kind,
	    .id = (ino >> VBF_INO_ID_SHIFT) & VBF_INO_ID_MAX,
	    .sub = sub,
	};
	return 0;
}

int vbf_kind_is_dir(enum vbf_kind kind)
{
	return kind == VBF_ROOT || kind == VBF_VM || kind == VBF_RP;
}
