# tests/nolib.sh: sourced after tests/lib.sh by the tests that run vmbak as on a host without
# some of the libraries it loads only when a path needs them (base/dl.h).
#
#   without_libs "SONAME..." CMD [ARGS...]
#
# runs CMD in a private mount namespace (unshare -m) where the file of each SONAME (as
# ldconfig -p finds it) is covered by an empty file (a bind mount): dlopen() of that name, and
# of any library that needs it, fails ("file too short") as for a missing library. Nothing is
# changed outside the namespace, which ends with CMD. Needs root and unshare (util-linux); CMD
# must not mount anything meant to outlive it. Exit status 125 when the namespace cannot be made.
without_libs() {
	local libs=$1
	shift
	: >"$TESTTMP/.empty-lib"
	unshare -m --propagation private -- bash -c '
		empty=$1 libs=$2
		shift 2
		for l in $libs; do
			p=$(ldconfig -p | awk -v l="$l" "\$1 == l { print \$NF; exit }")
			[ -n "$p" ] || continue # not installed: already missing
			mount --bind "$empty" "$(readlink -f "$p")" || exit 125
		done
		exec "$@"' without_libs "$TESTTMP/.empty-lib" "$libs" "$@"
}

# The libraries of base/dl.h.
DL_LIBS="librados.so.2 libvirt.so.0 libxml2.so.2 libnbd.so.0 libcryptsetup.so.12"
