# vmbakfs: plain GNU make with pkg-config.
#   make [all]        build vmbak and vmbakfs
#   make check        install test dependencies (Debian, as root), check-deps, build, run every test
#   make check-deps   the dependency rules between the layers (tests/check-deps.py)
#   make demo         install dependencies, build, ingest a small ext4 disk, mount, show it
#   make install      PREFIX=/usr/local DESTDIR= (programs in $(PREFIX)/bin, pages in man1/man5,
#                     systemd units in $(PREFIX)/lib/systemd/system, job files in JOBDIR)
#   make asan         build with address and undefined sanitizers into build-asan/, run the tests
#   make fault        build the fault-injection programs into $(B)-fault/ (tests/fault/fault.c)
#   make fuzz         build the libFuzzer targets with clang and run each for FUZZ_SECONDS
#   make check-long   the long tests: POWERCUT_CUTS (50) power cuts of a QEMU guest (make check
#                     runs 6, tests/fuse/powercut.sh); POWERCUT_ARGS adds options of
#                     tests/powercut/run.sh (--seed S, --window MS, --plain, --keep); then the
#                     mutation, page damage and library fault suites at full length
#   make bench        the benchmark (not part of check; tests/bench/rewrap.sh: vmbak rewrap)
#   make bench-1g     the same on the 1 GiB corpus (tests/bench/run.sh 1G)
#   make bench-restore  restore, instant recovery and vmbak files timings (tests/bench/restore.sh)
#   make bench-scale  how costs grow: ingest into a vault of 10M chunks, list/ls -R of 100 VMs x
#                     100 points, gc and verify at 10M chunks (time, peak RSS), prune of 10,000
#                     points (tests/bench/scale.sh; BENCH_DIR, default /var/tmp/bench-scale)
#   make format       clang-format every source file
# A user's CFLAGS add to the project's flags; they never replace the warnings.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
JOBDIR ?= $(SYSCONFDIR)/vmbak/jobs
DESTDIR ?=
CC ?= cc
PKG_CONFIG ?= pkg-config
B ?= build

PKGS := fuse3 lmdb libzstd libcrypto json-c p11-kit-1
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter -Wno-missing-field-initializers
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -O2 -g -pthread \
	-Ibase -Ikeyvault -Istore $(WARN) $(PKG_CFLAGS)
ALL_CFLAGS := $(BASE_CFLAGS) $(EXTRA_CFLAGS) $(CFLAGS)
ALL_LDFLAGS := -pthread $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread
# Loaded with dlopen() when a path first needs them (base/dl.h), never linked, so that every
# other run starts without mapping them: librados (chunks in RADOS, store/rados_dl.c; Debian
# librados-dev has no .pc file), and for vmbak alone libcryptsetup (vmbak files), libnbd (NBD
# sources), libvirt (ingest --libvirt, restore --define) and libxml2 (restore's domain.xml).
# Only their headers are used here.
VMBAK_LIBS := -lutil
VMBAK_PKGS := libcryptsetup libnbd libvirt libxml-2.0

# FAULT=1 (make fault): every call our objects make to these goes through tests/fault/fault.c.
FAULT_WRAPS := malloc calloc realloc strdup strndup write fsync mdb_put mdb_del mdb_txn_commit
ifeq ($(FAULT),1)
# The test build: fault injection, and the test hooks (VMBAK_TEST_PAUSE_*, VMBAK_TEST_NOW)
# that an installed vmbak must not have.
ALL_CFLAGS += -DVMBAK_TEST_HOOKS
FAULT_OBJ := $(B)/tests/fault/fault.o
ALL_LDFLAGS += $(foreach f,$(FAULT_WRAPS),-Wl,--wrap=$(f))
endif

LIB_SRC := $(wildcard base/*.c) $(wildcard keyvault/*.c) $(wildcard store/*.c)
# front/: the start-up, messages and vault opening both programs share (not in the library:
# only the programs link it, and only they, and front/ itself, see its header).
FRONT_SRC := $(wildcard front/*.c)
VMBAK_SRC := $(wildcard tools/*.c) $(FRONT_SRC)
VMBAKFS_SRC := $(wildcard fs/*.c) $(FRONT_SRC)
UNIT_SRC := $(wildcard tests/unit/*_test.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
VMBAK_OBJ := $(VMBAK_SRC:%.c=$(B)/%.o)
VMBAKFS_OBJ := $(VMBAKFS_SRC:%.c=$(B)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
FUZZ_REPLAY_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/tests/%_replay)
LIBA := $(B)/libvmbak.a

.SECONDARY:

.PHONY: all check check-long test deps install uninstall clean asan fault fuzz bench bench-1g bench-restore bench-scale demo format check-deps

all: $(B)/vmbak $(B)/vmbakfs vmbak vmbakfs

# Convenience links at the top so ./vmbak works in a checkout.
vmbak vmbakfs: %: $(B)/%
	@ln -sf $< $@

$(B)/tools/%.o $(B)/fs/%.o $(B)/front/%.o: ALL_CFLAGS += -Ifront
$(B)/tools/%.o: ALL_CFLAGS += $(shell $(PKG_CONFIG) --cflags $(VMBAK_PKGS) 2>/dev/null)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/vmbak: $(VMBAK_OBJ) $(LIBA) $(FAULT_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(VMBAK_OBJ) $(FAULT_OBJ) $(LIBA) $(LIBS) $(VMBAK_LIBS)

$(B)/vmbakfs: $(VMBAKFS_OBJ) $(LIBA) $(FAULT_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(VMBAKFS_OBJ) $(FAULT_OBJ) $(LIBA) $(LIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBA) $(LIBS)

# Fuzz targets, linked with a replay driver that runs the corpus and crash files (no libFuzzer).
$(B)/tests/%_replay: $(B)/tests/fuzz/%.o $(B)/tests/fuzz/replay.o $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(B)/tests/fuzz/replay.o $(LIBA) $(LIBS)

$(B)/tests/fuzz/replay.o: tests/fuzz/replay.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Test tools: built with the tests, run by them, never installed.
$(B)/tests/vbk-inspect: $(B)/tests/tools/inspect.o $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBA) $(LIBS)

test-bins: $(UNIT_BIN) $(FUZZ_REPLAY_BIN) $(B)/tests/vbk-inspect $(B)/tests/libfault.so

# An LD_PRELOAD that fails the Nth system call of a process, inside the libraries too
# (tests/cli/libfaults.sh). Never sanitized: it sits under the sanitizer's own wrappers.
$(B)/tests/libfault.so: tests/fault/libfault.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -g $(WARN) $(CFLAGS) -o $@ $< -ldl

deps:
	@tests/deps.sh

check: deps
	$(MAKE) check-deps all test-bins fault
	B=$(B) tests/run

test: all test-bins fault
	B=$(B) tests/run

POWERCUT_CUTS ?= 50
POWERCUT_ARGS ?=

# The programs of $(B), built again into $(B)-fault with tests/fault/fault.c wrapped around
# allocation, write, fsync and LMDB writes (tests/cli/faults.sh uses them). Only the programs:
# the convenience links at the top stay those of $(B).
fault:
	$(MAKE) B=$(B)-fault FAULT=1 $(B)-fault/vmbak $(B)-fault/vmbakfs

# The suites of issue 10 at full length (tests/run runs them shorter in check): the power
# cuts of a QEMU guest, then the mutation, page damage and library fault suites.
check-long: deps
	$(MAKE) all test-bins fault
	VMBAK=$(abspath $(B))/vmbak VMBAKFS=$(abspath $(B))/vmbakfs \
		tests/powercut/run.sh --cuts $(POWERCUT_CUTS) $(POWERCUT_ARGS)
	MUTATE_COUNT=1200 PAGEDAMAGE_COUNT=500 MUTATE_SECONDS=0 PAGEDAMAGE_SECONDS=0 \
		LIBFAULTS_MAX=30 TEST_TIMEOUT=7200 B=$(B) \
		tests/run 'fuse/(mutate|pagedamage)|cli/libfaults'

asan:
	$(MAKE) B=build-asan EXTRA_CFLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
		LDFLAGS="-fsanitize=address,undefined $(LDFLAGS)" all test-bins fault
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		B=build-asan tests/run

FUZZ_SECONDS ?= 60
fuzz:
	@tests/fuzz/run-libfuzzer.sh $(FUZZ_SECONDS)

bench: all
	@tests/bench/run.sh

bench-1g: all
	@tests/bench/run.sh 1G

bench-restore: all
	@tests/bench/restore.sh

bench-scale: all
	@tests/bench/scale.sh

demo:
	@tests/demo.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 0755 $(B)/vmbak $(B)/vmbakfs $(DESTDIR)$(BINDIR)/
	install -m 0644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(wildcard man/*.5) $(DESTDIR)$(MANDIR)/man5/
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@JOBDIR@|$(JOBDIR)|g' \
		'tools/systemd/vmbak-backup@.service.in' >'$(DESTDIR)$(UNITDIR)/vmbak-backup@.service'
	chmod 0644 '$(DESTDIR)$(UNITDIR)/vmbak-backup@.service'
	install -m 0644 'tools/systemd/vmbak-backup@.timer' '$(DESTDIR)$(UNITDIR)/'

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vmbak $(DESTDIR)$(BINDIR)/vmbakfs
	rm -f '$(DESTDIR)$(UNITDIR)/vmbak-backup@.service' '$(DESTDIR)$(UNITDIR)/vmbak-backup@.timer'
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(wildcard man/*.1)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(wildcard man/*.5)))

clean:
	rm -rf build build-asan build-fuzz build-fault build-asan-fault vmbak vmbakfs tests/tmp

format:
	clang-format -i $(wildcard */*.c */*.h tests/*/*.c)

# Dependencies point one way: base <- keyvault <- store <- front <- fs, tools; fs/ and tools/
# include only public headers of store/ and keyvault/; only store/chunkstore_lmdb.c touches
# the chunks database; no include loop in a layer, no call loop in store/ (tests/check-deps.py).
check-deps:
	@python3 tests/check-deps.py

-include $(shell find $(B) -name '*.d' 2>/dev/null)
