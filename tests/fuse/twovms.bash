# tests/fuse/twovms.bash: sourced by tests/fuse/mutate.sh and tests/fuse/pagedamage.sh (after
# tests/lib.sh; not a test itself: tests/run runs only *.sh).
#
# two_vm_vault VAULT [OLD]: in the current directory, makes the source images and the vault
# VAULT, encrypted, passphrase in ./pass (exported as VMBAK_PASSPHRASE_FILE), chunk size
# 16 KiB, the same bytes in every run:
#   vm1  disks sda (4 MiB, holes; random, text and blocks shared with vm2) and sdb (1 MiB);
#        points at T0+1m (full), T0+1h (--changed), T0+2h (full, 64 KiB changed); the first
#        protected
#   vm2  disk sda (3 MiB, holes); points at T0+2m (full), T0+1h1m (--changed)
# OLD, if given, gets a copy of data.mdb and the config taken after the first point of each
# VM. Reads every image once through a mount and leaves, in the current directory:
#   images     "SHA256 VM/RP/DISK.img" per image, sorted by path (8 lines)
#   latest     "VM RP" per VM: where VM/latest points
#   manifests/VM/RP.json   each point's manifest.json as the mount shows it
# and fails the test unless every image reads back as ingested.
# shellcheck shell=bash

# need_py_lmdb: sets PY to a python3 that has the lmdb module (Debian's python3-lmdb is for
# Debian's python3, which may not be the first python3 on PATH), or skips.
need_py_lmdb() {
	local p
	PY=
	for p in python3 /usr/bin/python3; do
		if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import lmdb' 2>/dev/null; then
			PY=$p
			return 0
		fi
	done
	skip "needs the python3 module lmdb (Debian package python3-lmdb)"
}

# rbytes N TAG: N pseudo-random bytes, the same for the same TAG in every run.
rbytes() {
	python3 -c 'import random, sys
sys.stdout.buffer.write(random.Random(sys.argv[2]).randbytes(int(sys.argv[1])))' "$@"
}

# change IMG CHANGEDFILE OFFSET...: new bytes in the 16 KiB block at each OFFSET, the
# changed ranges in CHANGEDFILE.
change() {
	local img=$1 list=$2 off
	shift 2
	: >"$list"
	for off in "$@"; do
		rbytes 16384 "$img $off" | dd of="$img" bs=16384 seek=$((off / 16384)) \
			conv=notrunc status=none
		echo "$off 16384" >>"$list"
	done
}

two_vm_vault() {
	local v=$1 old=${2:-} t0=1772359200 p1 d vm rp img want got mnt
	printf 'two-vm test passphrase\n' >pass
	chmod 600 pass
	VMBAK_PASSPHRASE_FILE=$(pwd)/pass
	export VMBAK_PASSPHRASE_FILE
	python3 - <<'EOF'
import random
r = random.Random(10)
cs = 16384
def text(n):
    words = [b"alpha", b"beta", b"gamma", b"vault", b"chunk", b"index", b"\n"]
    return b" ".join(r.choice(words) for _ in range(n))[:n]
def write(path, size, runs):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in runs:
            f.seek(off)
            f.write(data)
shared = [r.randbytes(cs) for _ in range(8)]
# vm1 sda: 4 MiB; data at 0-256K (random), 1M-1.25M (text), 2M+ the shared blocks, the end.
write("a1.img", 4 << 20, [(0, r.randbytes(256 << 10)), (1 << 20, text(256 << 10)),
                          (2 << 20, b"".join(shared)), ((4 << 20) - 3 * cs, text(3 * cs))])
write("b1.img", 1 << 20, [(0, text(64 << 10)), (512 << 10, r.randbytes(5 * cs + 100))])
# vm2 sda: 3 MiB, the shared blocks at other offsets, plus its own data.
write("c1.img", 3 << 20, [(cs, b"".join(shared[:4])), (1 << 20, b"".join(shared[4:])),
                          (2 << 20, r.randbytes(128 << 10)), (5 * cs, text(2 * cs))])
EOF
	expect_status 0 "$VMBAK" init "$v" --chunk-size 16K
	VMBAK_TEST_NOW=$((t0 + 60)) expect_status 0 "$VMBAK" ingest "$v" vm1 \
		--disk sda=a1.img --disk sdb=b1.img
	VMBAK_TEST_NOW=$((t0 + 120)) expect_status 0 "$VMBAK" ingest "$v" vm2 --disk sda=c1.img
	if [ -n "$old" ]; then
		mkdir -p "$old"
		cp --sparse=always "$v/data.mdb" "$v/vmbak-vault.json" "$old/"
	fi
	cp a1.img a2.img
	cp b1.img b2.img
	change a2.img ch-a2 0 $((1 << 20)) $((3 << 20))
	change b2.img ch-b2 $((512 << 10))
	VMBAK_TEST_NOW=$((t0 + 3600)) expect_status 0 "$VMBAK" ingest "$v" vm1 \
		--disk sda=a2.img --disk sdb=b2.img --changed sda=ch-a2 --changed sdb=ch-b2
	cp c1.img c2.img
	change c2.img ch-c2 $((2 << 20)) 16384
	VMBAK_TEST_NOW=$((t0 + 3660)) expect_status 0 "$VMBAK" ingest "$v" vm2 \
		--disk sda=c2.img --changed sda=ch-c2
	cp a2.img a3.img
	rbytes 65536 a3 | dd of=a3.img bs=65536 seek=40 conv=notrunc status=none
	VMBAK_TEST_NOW=$((t0 + 7200)) expect_status 0 "$VMBAK" ingest "$v" vm1 \
		--disk sda=a3.img --disk sdb=b2.img
	expect_status 0 "$VMBAK" list "$v" --json
	p1=$(python3 -c 'import json, sys
print([p["id"] for p in json.load(open(sys.argv[1])) if p["vm"] == "vm1"][0])' "$OUT")
	expect_status 0 "$VMBAK" protect "$v" "vm1/$p1"
	expect_status 0 "$VMBAK" verify "$v"
	rm -f "$v/lock.mdb"

	# The listing, read through a mount.
	mnt=$(_lib_abspath "$TESTTMP/mnt-twovms")
	vmount "$v" "$mnt"
	: >images
	: >latest
	for d in "$mnt"/*/; do
		vm=$(basename "$d")
		echo "$vm $(readlink "$mnt/$vm/latest")" >>latest
		for rp in "$mnt/$vm"/*/; do
			rp=$(basename "$rp")
			[ "$rp" = latest ] && continue
			mkdir -p "manifests/$vm"
			cp "$mnt/$vm/$rp/manifest.json" "manifests/$vm/$rp.json"
			for img in "$mnt/$vm/$rp"/*.img; do
				echo "$(sha256sum <"$img" | cut -d' ' -f1) $vm/$rp/$(basename "$img")" \
					>>images
			done
		done
	done
	vumount "$mnt"
	rmdir "$mnt"
	sort -k 2 -o images images
	[ "$(wc -l <images)" -eq 8 ] || { cat images; fail "expected 8 images in 5 points"; }
	# Each point's images are its sources.
	want=$(for img in a1 b1 c1 a2 b2 c2 a3; do sha256sum <$img.img | cut -d' ' -f1; done |
		sort -u)
	got=$(awk '{ print $1 }' images | sort -u)
	[ "$want" = "$got" ] || fail "the images do not read back as ingested"
	sed 's/^/# image /' images
}

# classify STATUS ERRFILE: "absent", "eio" or "other: ..." for a failed read.
classify() {
	local st=$1 errf=$2
	if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then
		echo "other: timed out"
	elif grep -q 'No such file or directory' "$errf"; then
		echo absent
	elif grep -q 'Input/output error' "$errf"; then
		echo eio
	else
		echo "other: status $st: $(head -c 200 "$errf" | tr '\n' ' ')"
	fi
}

# check_vault D MNT [verify]: mounts the vault D at MNT (vmbakfs -f in the background, so that its
# exit status is seen), reads every image of ./images, the manifests and latest links, checks
# that the daemon lives and exits cleanly, then (with "verify") runs vmbak verify on D. Sets
#   probs      an array of the problems found (empty: none)
#   outcome    unopenable (the mount refused, clearly), detected (some read failed cleanly),
#              reads-exact-verify-flags, unnoticed-harmless (all exact, verify 0)
#   result     an associative array: image path -> exact, wrong, absent, eio or other
# and counts in the associative array count (read-*, verify-*).
declare -A count=() result=()
bump() { count[$1]=$((${count[$1]:-0} + 1)); }
check_vault() {
	local D=$1 M=$2 do_verify=${3:-} st line sum path vm rp lat bad=0 dead=0 refused=0 pid vst=0 k
	local wrong=0
	probs=()
	result=()
	# The mount, in the foreground of a background process, so that its status is seen.
	"$VMBAKFS" "$D" "$M" -f >fs.out 2>fs.err &
	pid=$!
	for ((k = 0; k < 400; k++)); do
		is_mounted "$M" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	if ! is_mounted "$M"; then
		st=0
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null || true
			probs+=("the mount did not come up within 8 s")
		else
			wait "$pid" 2>/dev/null || st=$?
			if [ "$st" -ge 128 ]; then
				probs+=("vmbakfs died on a signal before mounting (status $st): $(tail -n 3 fs.err | tr '\n' ' ')")
			elif [ "$st" -eq 0 ] || [ "$(wc -l <fs.err)" -ne 1 ] ||
				! grep -q '^vmbakfs: ' fs.err; then
				probs+=("vmbakfs refused to mount (status $st) without one clear line: $(head -c 300 fs.err | tr '\n' '|')")
			fi
		fi
		refused=1
	else
		while read -r sum path; do
			st=0
			timeout -k 5 20 sha256sum "$M/$path" >rd.out 2>rd.err || st=$?
			if [ "$st" -eq 0 ] && [ "$(cut -d' ' -f1 rd.out)" = "$sum" ]; then
				bump read-exact
				result[$path]=exact
				continue
			fi
			if [ "$st" -eq 0 ]; then
				probs+=("$path: WRONG BYTES with exit 0 (sha256 $(cut -c1-16 rd.out)..., expected ${sum:0:16}...)")
				bump read-wrong
				result[$path]=wrong
				wrong=1
				continue
			fi
			bad=1
			if grep -Eq 'not connected|connection abort' rd.err; then
				probs+=("$path: $(head -c 200 rd.err): the daemon is gone")
				dead=1
				break
			fi
			line=$(classify "$st" rd.err)
			bump "read-${line%%:*}"
			result[$path]=${line%%:*}
			case "$line" in
			other*) probs+=("$path: $line") ;;
			esac
		done <images
		# Manifests: the same bytes, or absent / EIO.
		for f in manifests/*/*.json; do
			[ "$dead" -eq 0 ] || break
			vm=$(basename "$(dirname "$f")")
			rp=$(basename "$f" .json)
			st=0
			timeout -k 5 10 cat "$M/$vm/$rp/manifest.json" >mf.out 2>mf.err || st=$?
			if [ "$st" -eq 0 ]; then
				cmp -s mf.out "$f" ||
					probs+=("$vm/$rp/manifest.json: CHANGED with exit 0: $(diff "$f" mf.out | grep "^[<>]" | head -n 4 | tr "\n" " " || true)")
			else
				bad=1
				line=$(classify "$st" mf.err)
				case "$line" in
				other*) probs+=("$vm/$rp/manifest.json: $line") ;;
				esac
			fi
		done
		# latest: one of the VM's points, or absent / EIO.
		while read -r vm lat; do
			[ "$dead" -eq 0 ] || break
			st=0
			line=$(timeout -k 5 10 readlink "$M/$vm/latest" 2>lt.err) || st=$?
			if [ "$st" -eq 0 ]; then
				[ -e "manifests/$vm/$line.json" ] ||
					probs+=("$vm/latest: points to '$line', not a point of $vm")
			elif [ -s lt.err ]; then
				line=$(classify "$st" lt.err)
				case "$line" in
				other*) probs+=("$vm/latest: $line") ;;
				esac
			fi
		done <latest
		# The daemon lives and answers. A root directory that lists with EIO is allowed (everything
		# is then unreadable, which the rule allows), but counted.
		if [ "$dead" -eq 1 ] || ! is_mounted "$M" || ! timeout -k 5 10 mountpoint -q "$M" ||
			! timeout -k 5 10 stat "$M" >/dev/null 2>&1; then
			probs+=("the mount died or stopped answering")
			dead=1
		elif ! timeout -k 5 10 ls -a "$M" >/dev/null 2>ls.err; then
			if grep -q 'Input/output error' ls.err; then
				bump root-listing-eio
			else
				probs+=("the mount's root does not list: $(head -c 200 ls.err)")
			fi
		fi
		_lib_fuse_unmount "$M" || probs+=("cannot unmount")
		st=0
		for ((k = 0; k < 200; k++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null
			probs+=("vmbakfs did not exit 10 s after its unmount")
		fi
		wait "$pid" 2>/dev/null || st=$?
		if [ "$st" -ne 0 ] && [ "$dead" -eq 0 ]; then
			probs+=("vmbakfs exited with status $st: $(tail -n 3 fs.err | tr '\n' ' ')")
		elif [ "$st" -ne 0 ]; then
			probs+=("vmbakfs died with status $st: $(tail -n 3 fs.err | tr '\n' ' ')")
		fi
		if grep -Eq 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|double free|corrupted' fs.err; then
			probs+=("vmbakfs: $(grep -Em1 'ERROR|runtime error|double free|corrupted' fs.err)")
		fi
	fi

	# verify
	if [ "$do_verify" = verify ]; then
		timeout -k 5 60 "$VMBAK" verify "$D" </dev/null >vf.out 2>vf.err || vst=$?
		if [ "$vst" -eq 124 ] || [ "$vst" -eq 137 ]; then
			probs+=("verify timed out")
		elif [ "$vst" -ge 128 ]; then
			probs+=("verify CRASHED (status $vst): $(tail -n 2 vf.err | tr '\n' ' ')")
		elif [ "$vst" -eq 0 ] && { [ "$bad" -eq 1 ] || [ "$refused" -eq 1 ]; }; then
			probs+=("VERIFY EXITS 0 though reads failed or the vault did not mount")
		elif [ "$vst" -eq 0 ] && [ "$wrong" -eq 1 ]; then
			probs+=("VERIFY EXITS 0 though the mount served wrong bytes")
		elif [ "$vst" -ne 0 ] && { [ "$(wc -l <vf.err)" -ne 1 ] || ! grep -q '^vmbak: ' vf.err; }; then
			probs+=("verify (status $vst) without one clear line on stderr: $(head -c 300 vf.err | tr '\n' '|')")
		fi
		if grep -Eq 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' vf.err; then
			probs+=("verify: $(grep -Em1 'ERROR|runtime error' vf.err)")
		fi
	fi

	if [ "$refused" -eq 1 ]; then
		outcome=unopenable
	elif [ "$bad" -eq 1 ]; then
		outcome=detected
	elif [ "$vst" -ne 0 ]; then
		outcome=reads-exact-verify-flags
	else
		outcome=unnoticed-harmless
	fi
	[ "$do_verify" = verify ] && bump "verify-$vst"
	return 0
}
