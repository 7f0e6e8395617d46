#!/usr/bin/env bash
# vmbakfs refuses bad input before it mounts: a non-zero exit, one line on stderr, nothing
# mounted, nothing left running.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd setsid
need_programs
cd "$TESTTMP"

printf 'the right passphrase\n' >pass
printf 'a wrong passphrase\n' >wrong
chmod 600 pass wrong
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

VMBAK_PASSPHRASE_FILE=$TESTTMP/pass expect_status 0 "$VMBAK" init "$TESTTMP/v"
head -c 100000 /dev/urandom >d.img
VMBAK_PASSPHRASE_FILE=$TESTTMP/pass expect_status 0 "$VMBAK" ingest "$TESTTMP/v" vm1 --disk d=d.img
mkdir mnt notavault
echo x >notavault/file
: >afile

mounts_here() {
	awk -v d="$TESTTMP/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l
}

# refused STATUS CMD...: CMD (a vmbakfs run) exits with STATUS, prints one line on stderr that
# names the program (or is a usage line), and mounts nothing under TESTTMP.
refused() {
	local want=$1
	shift
	expect_status "$want" "$@"
	expect_stderr '^(vmbakfs|usage)'
	[ "$(mounts_here)" -eq 0 ] || fail "'$*' mounted something: $(awk -v d="$TESTTMP/" \
		'index($5, d) == 1 { print $5 }' /proc/self/mountinfo)"
	note "ok: $(cat "$ERR")"
}
# Also unmount mnt at exit, should one of these mount it after all.
echo "fuse $(_lib_abspath mnt)" >>"$_lib_state"

export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
refused 2 "$VMBAKFS"
refused 2 "$VMBAKFS" "$TESTTMP/v"
refused 2 "$VMBAKFS" "$TESTTMP/v" mnt --no-such-option
refused 1 "$VMBAKFS" "$TESTTMP/missing" mnt
refused 1 "$VMBAKFS" "$TESTTMP/notavault" mnt
refused 1 "$VMBAKFS" "$TESTTMP/afile" mnt
refused 1 "$VMBAKFS" "$TESTTMP/v" afile
refused 1 "$VMBAKFS" "$TESTTMP/v" "$TESTTMP/no-such-dir"
refused 1 "$VMBAKFS" "$TESTTMP/v" mnt -o passphrase_file="$TESTTMP/no-such-file"
note "a cache larger than the bound (half of the memory, at most 64 GiB)"
refused 2 "$VMBAKFS" "$TESTTMP/v" mnt -o cache_size=99999999999
expect_stderr "cache_size"
refused 2 "$VMBAKFS" "$TESTTMP/v" mnt -o cache_size=65G
refused 2 "$VMBAKFS" "$TESTTMP/v" mnt -o cache_size=0

note "wrong passphrase"
VMBAK_PASSPHRASE_FILE=$TESTTMP/wrong refused 1 "$VMBAKFS" "$TESTTMP/v" mnt
refused 1 "$VMBAKFS" "$TESTTMP/v" mnt -o passphrase_file="$TESTTMP/wrong"
unset VMBAK_PASSPHRASE_FILE
VMBAK_PASSPHRASE=$(cat wrong) refused 1 "$VMBAKFS" "$TESTTMP/v" mnt
grep -qF "$(cat wrong)" "$ERR" && fail "the passphrase appears in the message"

note "no passphrase and no terminal"
refused 1 setsid -w "$VMBAKFS" "$TESTTMP/v" mnt </dev/null
refused 1 setsid -w "$VMBAKFS" "$TESTTMP/v" mnt -f </dev/null

note "the right passphrase from -o passphrase_file mounts"
vmount "$TESTTMP/v" mnt -o passphrase_file="$TESTTMP/pass"
cmp d.img mnt/vm1/latest/d.img || fail "the image differs"
vumount mnt
vmount "$TESTTMP/v" mnt -o passphrase_file="$TESTTMP/pass",cache_size=16
cmp d.img mnt/vm1/latest/d.img || fail "the image differs with cache_size=16"
vumount mnt
exit 0
