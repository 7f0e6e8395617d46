#!/usr/bin/env bash
# make check-deps (tests/check-deps.py): passes on the tree, and fails with one line naming the
# file on each kind of violation, seeded one at a time into a copy of the sources: fs/ including
# tools/ and the reverse, a lower layer including a higher one, fs/ or tools/ including a header
# internal to store/ or keyvault/, a file other than store/chunkstore_lmdb.c naming the chunks
# database, an include loop among headers of one layer, and a call loop among the files of
# store/, keyvault/ or tools/.
. "$SRCDIR/tests/lib.sh"

need_cmd python3
cd "$TESTTMP"

note "the tree as it is"
expect_status 0 python3 "$SRCDIR/tests/check-deps.py" "$SRCDIR"
expect_stdout '^dependencies ok'

# A fresh copy of the sources the rules read, for each seeded violation.
fresh() {
	rm -rf tree
	mkdir tree
	(cd "$SRCDIR" && cp -r --parents base keyvault store front fs tools "$TESTTMP/tree/")
	mkdir -p tree/tests
}

# seed WHAT ERE FILE LINE: adds LINE at the end of FILE (in a fresh copy) and expects check-deps
# to fail with one line matching ERE.
seed() {
	local what=$1 ere=$2 file=$3 line=$4
	note "$what"
	fresh
	[ -f "tree/$file" ] || fail "no file tree/$file to seed"
	printf '%s\n' "$line" >>"tree/$file"
	expect_status 1 python3 "$SRCDIR/tests/check-deps.py" "$TESTTMP/tree"
	expect_stderr "$ere"
}

seed "fs/ includes tools/" '^check-deps: fs/ops.c: includes tools/common.h: fs/ and tools/ never' \
	fs/ops.c '#include "../tools/common.h"'
seed "tools/ includes fs/" '^check-deps: tools/cmd_list.c: includes fs/ino.h' \
	tools/cmd_list.c '#include "../fs/ino.h"'
seed "store/ includes front/" '^check-deps: store/rp.c: includes front/front.h of a higher layer' \
	store/rp.c '#include "../front/front.h"'
seed "base/ includes keyvault/" '^check-deps: base/json.c: includes keyvault/kv.h of a higher layer' \
	base/json.c '#include "kv.h"'
seed "tools/ includes a store-internal header" \
	'^check-deps: tools/cmd_verify.c: includes store/dbguard.h, internal to store/' \
	tools/cmd_verify.c '#include "dbguard.h"'
seed "fs/ includes a store-internal header" '^check-deps: fs/ops.c: includes store/internal.h, internal' \
	fs/ops.c '#include "internal.h"'
seed "tools/ includes keyvault's internal header" \
	'^check-deps: tools/cmd_key.c: includes keyvault/kv_internal.h, internal to keyvault/' \
	tools/cmd_key.c '#include "kv_internal.h"'
seed "another store/ file uses the chunks database handle" \
	'^check-deps: store/rp.c: opens or names the chunks database' \
	store/rp.c 'static int peek(struct vbs_vault *v) { return (int)v->dbi_chunks; }'
seed "another store/ file opens the chunks database by name" \
	'^check-deps: store/jobs.c: opens or names the chunks database' \
	store/jobs.c 'static void peek(MDB_txn *t, MDB_dbi *d) { mdb_dbi_open(t, "chunks", 0, d); }'
seed "an include loop among keyvault/ headers" \
	'^check-deps: keyvault/: include loop among keyvault/crypto.h keyvault/vaultkey.h' \
	keyvault/crypto.h '#include "vaultkey.h"'
seed "a call loop among store/ files" '^check-deps: store/: call loop among .*store/image.c.*store/rp.c' \
	store/rp.c 'static void loop(void) { vbs_image_close(0); }'
# audit.c is handed open key vaults: logging a change from kv_file.c must not lead back there.
seed "a call loop among keyvault/ files" \
	'^check-deps: keyvault/: call loop among keyvault/audit.c keyvault/kv.c keyvault/kv_file.c' \
	keyvault/audit.c 'static void loop(void) { vbk_kv_close(0); }'
seed "a call loop among tools/ files" '^check-deps: tools/: call loop among tools/cmd_jobs.c tools/common.c' \
	tools/common.c 'static void loop(void) { cli_job_finish(0, 0, 0, 0, 0, 0); }'

note "a comment or a string naming the chunks database is no violation"
fresh
printf '%s\n' '/* dbi_chunks belongs to chunkstore_lmdb.c */' 'static const char *s = "dbi_chunks";' \
	>>tree/store/rp.c
expect_status 0 python3 "$SRCDIR/tests/check-deps.py" "$TESTTMP/tree"
exit 0
