#!/usr/bin/env bash
# Damage: bytes flipped inside stored chunk frames (unencrypted and encrypted vaults), pages of
# data.mdb overwritten with garbage, a damaged or truncated config.
#
#   - Reads through the mount of a damaged range fail with EIO, never give wrong bytes; every
#     other range still reads right; the mount survives and keeps answering.
#   - vmbak verify exits 3 and names each damaged point, disk and byte range (two points share
#     the damaged chunks; two consecutive damaged chunks make one range); an undamaged VM of
#     the same vault verifies whole (exit 0).
#   - A damaged database or config: every command, and vmbakfs, exits with one clear line on
#     stderr and never on a signal.
#
# Chunk frames are found through the index: vbk-inspect (tests/tools/inspect.c) opens the
# sealed records and prints the chunk id of each chunk of a disk, the chunks database holds the
# frame (read with mdb_dump); the frame's bytes are then found in data.mdb and one byte in its
# middle is flipped.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd python3 mdb_dump cmp dd
need_programs
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

CS=65536
mkdir mnt
# Unmounted at exit too, should a vmbakfs of a damaged vault mount it.
echo "fuse $(_lib_abspath mnt)" >>"$_lib_state"
printf 'damage test passphrase\n' >pass
chmod 600 pass
cases=0

# no_signal STATUS CMD...: like expect_status, and the status is not a signal's (>= 128).
no_signal() {
	local want=$1
	st=0
	shift
	"$@" </dev/null >"$OUT" 2>"$ERR" || st=$?
	if [ "$st" -ge 128 ]; then
		_lib_show_output
		fail "'$*' died on a signal (status $st)"
	fi
	if [ "$st" -ne "$want" ] && [ "$want" -ne 99 ]; then
		_lib_show_output
		fail "'$*' exited with $st, expected $want"
	fi
	if [ "$st" -ne 0 ]; then
		if [ "$(wc -l <"$ERR")" -ne 1 ] || ! grep -Eq '^vmbak(fs)?: ' "$ERR"; then
			_lib_show_output
			fail "'$*' (status $st) must print exactly one line on stderr"
		fi
	fi
	cases=$((cases + 1))
	return 0
}

# A disk of 16 chunks: 0-7 random (stored raw), 8-15 text (stored compressed), so damage hits
# both kinds of frames. vm2 has other data and stays whole. The same bytes every run.
python3 - <<'EOF'
import os, random
random.seed(7)
with open("sda.img", "wb") as f:
    f.write(random.randbytes(8 * 65536))
    words = [b"alpha", b"beta", b"gamma", b"delta", b"vault", b"chunk", b"\n"]
    text = b" ".join(random.choice(words) for _ in range(200000))
    f.write(text[:8 * 65536])
with open("other.img", "wb") as f:
    f.write(random.randbytes(4 * 65536))
EOF

for enc in none aes-256-gcm; do
	note "vault with encryption $enc"
	V=$TESTTMP/v-$enc
	export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
	expect_status 0 "$VMBAK" init "$V" --encryption "$enc"
	expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=sda.img
	rp1=$(tail -n 1 "$OUT")
	expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=sda.img --disk sdb=sda.img
	rp2=$(tail -n 1 "$OUT")
	expect_status 0 "$VMBAK" ingest "$V" vm2 --disk d=other.img
	expect_status 0 "$VMBAK" verify "$V"
	expect_stdout ': whole$'

	# Chunk 3 (raw), chunks 10 and 11 (compressed, consecutive).
	flip_chunks "$V" vm1 sda 3 10 11
	cases=$((cases + 1))

	note "verify finds it and says where"
	expect_status 3 "$VMBAK" verify "$V"
	cat "$OUT"
	for rp in "$rp1" "$rp2"; do
		expect_stdout "^vm1/$rp sda: bytes $((3 * CS))-$((4 * CS - 1)): 1 damaged chunk"
		expect_stdout "^vm1/$rp sda: bytes $((10 * CS))-$((12 * CS - 1)): 2 damaged chunks"
	done
	expect_stdout "^vm1/$rp2 sdb: bytes $((3 * CS))-$((4 * CS - 1)): 1 damaged chunk"
	expect_stdout "^vm1/$rp2 sdb: bytes $((10 * CS))-$((12 * CS - 1)): 2 damaged chunks"
	grep -q '^vm2' "$OUT" && fail "verify blames vm2, which is whole"
	expect_stderr "is damaged: 6 problems, 3 damaged and 0 missing chunks, 2 points affected"
	expect_status 3 "$VMBAK" verify "$V" "vm1/$rp1" --json
	python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))
assert not o["whole"] and o["chunks_damaged"] == 3 and o["damaged_points"] == 1, o
r = sorted((p["disk"], p["offset"], p["length"]) for p in o["problems"])
assert r == [("sda", 3 * 65536, 65536), ("sda", 10 * 65536, 2 * 65536)], r
' "$OUT" || fail "verify --json of vm1/$rp1 is wrong"
	expect_status 0 "$VMBAK" verify "$V" vm2
	expect_status 0 "$VMBAK" verify "$V" vm2/latest --sample 50 --seed 3
	cases=$((cases + 4))

	note "reads through the mount: EIO on the damaged ranges, right bytes elsewhere"
	vmount "$V" mnt
	for rp in "$rp1" "$rp2"; do
		img=mnt/vm1/$rp/sda.img
		for n in 3 10 11; do
			st=0
			dd if="$img" of=got bs=$CS skip=$n count=1 status=none 2>dd.err || st=$?
			[ "$st" -ne 0 ] || fail "reading damaged chunk $n of $img succeeded"
			grep -q 'Input/output error' dd.err || { cat dd.err; fail "not EIO: chunk $n"; }
			# A read of a few bytes inside the chunk fails too (not only whole chunks).
			st=0
			dd if="$img" of=got bs=512 skip=$((n * 128 + 7)) count=1 status=none \
				2>dd.err || st=$?
			[ "$st" -ne 0 ] || fail "reading 512 bytes inside damaged chunk $n succeeded"
			cases=$((cases + 2))
		done
		for n in 0 1 2 4 5 6 7 8 9 12 13 14 15; do
			dd if="$img" of=got bs=$CS skip=$n count=1 status=none ||
				fail "chunk $n of $img does not read"
			dd if=sda.img of=want bs=$CS skip=$n count=1 status=none
			cmp -s got want || fail "chunk $n of $img reads wrong bytes"
		done
		# A whole-file copy stops with EIO, and what it wrote before is right.
		st=0
		cat "$img" >copy 2>cat.err || st=$?
		[ "$st" -ne 0 ] || fail "cat of damaged $img succeeded"
		cmp -s copy sda.img 2>/dev/null && fail "cat of $img gave the whole image"
		[ "$(stat -c %s copy)" -le $((3 * CS)) ] || fail "cat of $img read past the damage"
		cmp -n "$(stat -c %s copy)" copy sda.img || fail "cat of $img gave wrong bytes"
		cases=$((cases + 1))
	done
	note "the mount survives"
	is_mounted mnt || fail "the mount is gone"
	ls mnt/vm1 >/dev/null || fail "the mount does not answer"
	cmp mnt/vm2/latest/d.img other.img || fail "vm2 does not read back after the errors"
	dd if="mnt/vm1/$rp1/sda.img" of=got bs=$CS skip=15 count=1 status=none ||
		fail "an undamaged chunk does not read after the errors"
	vumount mnt
	unset VMBAK_PASSPHRASE_FILE
done

note "damaged index entry and records"
# patch VAULT OLD_HEX NEW_HEX: replaces bytes in data.mdb (all places; at least one).
patch() {
	python3 - "$@" <<'EOF' || fail "cannot patch $1"
import sys
vault, old, new = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
data = open(vault + "/data.mdb", "rb").read()
if old not in data:
    sys.exit("bytes not found in data.mdb")
open(vault + "/data.mdb", "r+b").write(data.replace(old, new))
EOF
}
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
V=$TESTTMP/v-rec
expect_status 0 "$VMBAK" init "$V" --encryption none
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=sda.img
rpa=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest "$V" vm2 --disk d=other.img
rpb=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest "$V" vm3 --disk d=sda.img
rpc=$(tail -n 1 "$OUT")
# The index entry of chunk 5 of vm1's disk: its key (lineage, 5, ~serial) and the chunk id
# after it in the leaf page; one byte of the id changed makes it name a chunk that is not
# stored. Entries carry no tag: the disk's group MACs (imap.h) catch it.
kv=$("$VBK_INSPECT" "$V" vm1 latest sda | python3 -c '
import sys
head = sys.stdin.readline().split()
serial, lin = int(head[1]), int(head[3])
for line in sys.stdin:
    n, v = line.split()
    if int(n) == 5:
        k = "%016x%016x%016x" % (lin, 5, ~serial & (2**64 - 1))
        print(k + v, k + v[:-2] + "%02x" % (int(v[-2:], 16) ^ 0xff))
')
[ -n "$kv" ] || fail "no index entry for chunk 5"
# shellcheck disable=SC2086
patch "$V" $kv
# vm2's point record: one bit of its sealed value flipped.
rec=$(python3 - "$V" <<'EOF'
import subprocess, sys
out = subprocess.run(["mdb_dump", "-s", "rps2", sys.argv[1]], check=True,
                     stdout=subprocess.PIPE).stdout.decode().splitlines()
body = out[out.index("HEADER=END") + 1:out.index("DATA=END")]
v = body[3].strip()  # the second record: vm2's
print(v, v[:40] + "%02x" % (int(v[40:42], 16) ^ 1) + v[42:])
EOF
)
# shellcheck disable=SC2086
patch "$V" $rec
expect_status 3 "$VMBAK" verify "$V"
cat "$OUT"
expect_stdout "^vm1/$rpa sda: bytes 0-$((16 * CS - 1)): the index does not match the disk's map"
expect_stdout "^vault: bad record: the record of the point with serial [0-9]+ is damaged"
grep -q "^vm3" "$OUT" && fail "verify blames vm3, which is whole"
expect_status 3 "$VMBAK" verify "$V" vm1
expect_stdout "the index does not match"
expect_status 0 "$VMBAK" verify "$V" vm3
cases=$((cases + 4))
vmount "$V" mnt
st=0
dd if=mnt/vm1/latest/sda.img of=got bs=$CS skip=5 count=1 status=none 2>dd.err || st=$?
[ "$st" -ne 0 ] && grep -q 'Input/output error' dd.err ||
	fail "reading a chunk whose index entry names a missing chunk did not give EIO"
# The group MAC covers 1024 chunks: the group fails as a whole (here the whole 16-chunk disk).
dd if=mnt/vm1/latest/sda.img of=got bs=$CS skip=6 count=1 status=none 2>/dev/null &&
	fail "chunk 6, in the same group as the damaged entry, reads"
cmp mnt/vm3/latest/d.img sda.img || fail "vm3 does not read back"
vumount mnt
cases=$((cases + 1))

note "a record replayed under another key: the older point's record (and escrow) as the newest"
# Both values open under the vault's key, but each is bound to its own key (serial): the
# newest point, given its predecessor's record, is damaged, never the older point in disguise.
V=$TESTTMP/v-replay
expect_status 0 "$VMBAK" init "$V"
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=sda.img
old=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=other.img
new=$(tail -n 1 "$OUT")
mdb_dump -s rps2 "$V" >rps2.dump || fail "cannot dump rps2"
python3 - <<'PY' || fail "cannot replay a record"
lines = open("rps2.dump").read().splitlines()
at = lines.index("HEADER=END") + 1
lines[at + 3] = lines[at + 1]  # the newest point's value := the older point's
open("rps2.dump", "w").write("\n".join(lines) + "\n")
PY
mdb_load -s rps2 -f rps2.dump "$V" || fail "cannot load the replayed record"
expect_status 3 "$VMBAK" verify "$V"
expect_stdout "the record of the point with serial [0-9]+ is damaged"
vmount "$V" mnt
st=0
cat "mnt/vm1/$new/sda.img" >got 2>/dev/null || st=$?
[ "$st" -ne 0 ] || fail "the newest point read with its predecessor's record"
cmp "mnt/vm1/$old/sda.img" sda.img || fail "the older point does not read after the replay"
vumount mnt
cases=$((cases + 2))

note "damaged pages of data.mdb: clear errors, no crash"
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
V=$TESTTMP/v-none
expect_status 0 "$VMBAK" init "$TESTTMP/clean" --encryption none
expect_status 0 "$VMBAK" ingest "$TESTTMP/clean" vm1 --disk sda=sda.img
"$VMBAK" list "$TESTTMP/clean" --json >list.clean
# Pages that matter: the two meta pages, and every page whose header says it is a B-tree
# branch or leaf page, and the first pages of three overflow runs (chunk frames: the damage
# above covers those). Free pages hold nothing anyone reads: garbage there changes nothing.
pages=$(python3 - "$TESTTMP/clean/data.mdb" <<'EOF'
import sys
d = open(sys.argv[1], "rb").read()
out, overflow = [], 0
for i in range(2, len(d) // 4096):
    p = d[i * 4096:(i + 1) * 4096]
    flags = int.from_bytes(p[10:12], "little")
    if int.from_bytes(p[:8], "little") != i or flags not in (1, 2, 4):
        continue
    if flags == 4:
        overflow += 1
        if overflow > 3:
            continue
    out.append(str(i))
print(" ".join(out))
EOF
)
[ -n "$pages" ] || fail "no B-tree pages found in data.mdb"
# The same garbage every run, so that a failure can be run again.
python3 -c 'import random, sys; random.seed(4096); sys.stdout.buffer.write(random.randbytes(4096))' \
	>garbage
for page in 0 1 0+1 $pages; do
	D=$TESTTMP/dmg
	rm -rf "$D"
	cp -a "$TESTTMP/clean" "$D"
	rm -f "$D/lock.mdb"
	for p in ${page//+/ }; do
		dd if=garbage of="$D/data.mdb" bs=4096 seek="$p" count=1 conv=notrunc status=none
	done
	no_signal 99 "$VMBAK" list "$D" --json
	cp "$OUT" list.dmg
	no_signal 99 "$VMBAK" info "$D" vm1
	no_signal 99 "$VMBAK" verify "$D"
	vst=$st
	if [ "$vst" -eq 0 ]; then
		# Whole, says verify: then it must be, as far as anyone can see.
		cmp -s list.clean list.dmg || fail "verify passes with page $page damaged, list differs"
	elif [ "$vst" -ne 3 ]; then
		fail "verify with page $page damaged exited $vst (expected 0 or 3)"
	fi
	no_signal 99 "$VMBAK" ingest "$D" vm1 --disk sda=sda.img
	no_signal 99 timeout 60 "$VMBAKFS" "$D" mnt
	if is_mounted mnt; then
		st=0
		cat mnt/vm1/latest/sda.img >got 2>/dev/null || st=$?
		if [ "$st" -eq 0 ] && [ "$vst" -eq 0 ]; then
			cmp -s got sda.img || fail "page $page damaged: the image reads wrong bytes"
		fi
		ls -R mnt >/dev/null 2>&1 || true
		vumount mnt
	fi
	cases=$((cases + 1))
done

note "damaged config: clear errors, no crash"
C=$TESTTMP/clean/vmbak-vault.json
cp "$C" config.good
size=$(stat -c %s config.good)
for how in empty truncated half garbage notjson noformat badversion badchunk nokeys nul; do
	D=$TESTTMP/cfg-$how
	rm -rf "$D"
	cp -a "$TESTTMP/clean" "$D"
	case "$how" in
	empty) : >"$D/vmbak-vault.json" ;;
	truncated) head -c 10 config.good >"$D/vmbak-vault.json" ;;
	half) head -c $((size / 2)) config.good >"$D/vmbak-vault.json" ;;
	garbage) head -c 300 /dev/urandom >"$D/vmbak-vault.json" ;;
	notjson) echo 'format = vmbak-vault' >"$D/vmbak-vault.json" ;;
	noformat) sed 's/"format"/"fmt"/' config.good >"$D/vmbak-vault.json" ;;
	badversion) sed 's/"version": *2/"version": 99/' config.good >"$D/vmbak-vault.json" ;;
	badchunk) sed 's/"chunk_size": *[0-9]*/"chunk_size": 12345/' config.good \
		>"$D/vmbak-vault.json" ;;
	nokeys) sed 's/"id_key"/"idkey"/' config.good >"$D/vmbak-vault.json" ;;
	nul) head -c 20 config.good >"$D/vmbak-vault.json"
		printf '\0\0\0' >>"$D/vmbak-vault.json"
		tail -c +24 config.good >>"$D/vmbak-vault.json" ;;
	esac
	no_signal 1 "$VMBAK" list "$D"
	expect_stderr "vault|config"
	no_signal 1 "$VMBAK" info "$D"
	no_signal 1 "$VMBAK" verify "$D"
	no_signal 1 "$VMBAK" ingest "$D" vm1 --disk sda=sda.img
	mkdir -p mnt
	no_signal 1 timeout 60 "$VMBAKFS" "$D" mnt
	is_mounted mnt && fail "vmbakfs mounted a vault with a $how config"
done
rm -rf "$TESTTMP/cfg-missing"
cp -a "$TESTTMP/clean" "$TESTTMP/cfg-missing"
rm "$TESTTMP/cfg-missing/vmbak-vault.json"
no_signal 1 "$VMBAK" verify "$TESTTMP/cfg-missing"
no_signal 1 timeout 60 "$VMBAKFS" "$TESTTMP/cfg-missing" mnt

note "damage cases: $cases"
exit 0
