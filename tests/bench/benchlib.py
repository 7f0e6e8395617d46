#!/usr/bin/env python3
"""Helpers of tests/bench/run.sh (standard library only).

  benchlib.py extents BASE DAY2 OUT [GRANULE]   changed ranges of DAY2 against BASE, as
                                                 "OFFSET LENGTH" lines, GRANULE bytes apart
  benchlib.py sparse-make FILE SIZE DATA SEED    a sparse disk of SIZE bytes holding DATA bytes,
                                                 1 MiB pieces of seeded random bytes at regular
                                                 offsets; their SHA-256 sums in FILE.sha256
  benchlib.py sparse-check FILE SIZE DATA SEED [SUMS]
                                                 reads those pieces back and compares them with
                                                 the sums in SUMS (else computed again)
  benchlib.py pread-extents FILE EXTENTS         reads the "OFFSET LENGTH" ranges of EXTENTS
                                                 from FILE with pread, 1 MiB at a time, in one
                                                 process
  benchlib.py fio JSON                           "ios iops p50_us p99_us" of a fio JSON report,
                                                 its jobs summed
  benchlib.py lmdb-meta                          reads `mdb_stat -ea` on stdin, prints the bytes
                                                 of index and point metadata (below), then
                                                 those of them in the database 'tails'
  benchlib.py report RAW NOTES OUTDIR            the table: OUTDIR/results.{txt,tsv,json}
"""
import hashlib
import json
import os
import random
import sys

MIB = 1 << 20
PIECE = MIB


def extents(base, day2, out, granule=65536):
    """Ranges where the two files differ, at GRANULE granularity, adjacent ones merged."""
    runs = []
    with open(base, "rb") as a, open(day2, "rb") as b:
        off = 0
        while True:
            x = a.read(granule)
            y = b.read(granule)
            if not x and not y:
                break
            if x != y:
                n = max(len(x), len(y))
                if runs and runs[-1][0] + runs[-1][1] == off:
                    runs[-1][1] += n
                else:
                    runs.append([off, n])
            off += max(len(x), len(y))
    with open(out, "w") as f:
        for o, n in runs:
            f.write(f"{o} {n}\n")


def pieces(size, data):
    """Offsets of the 1 MiB pieces: spread evenly over the disk, MiB-aligned."""
    n = max(1, data // PIECE)
    step = (size // n) // MIB * MIB
    if step < PIECE:
        raise SystemExit("sparse: disk too small for its data")
    return [i * step for i in range(n)]


def sparse_digests(size, data, seed):
    """SHA-256 of each piece, computed once and kept beside the disk (regenerating the random
    bytes costs more than reading them back)."""
    r = random.Random(seed)
    return [hashlib.sha256(r.randbytes(PIECE)).hexdigest() for _ in pieces(size, data)]


def sparse_make(path, size, data, seed):
    r = random.Random(seed)
    sums = []
    with open(path, "wb") as f:
        f.truncate(size)
        for off in pieces(size, data):
            b = r.randbytes(PIECE)
            sums.append(hashlib.sha256(b).hexdigest())
            f.seek(off)
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    with open(path + ".sha256", "w") as f:
        f.write("\n".join(sums) + "\n")


def sparse_check(path, size, data, seed, digest_file=None):
    sums = None
    if digest_file and os.path.exists(digest_file):
        with open(digest_file) as f:
            sums = f.read().split()
    if sums is None or len(sums) != len(pieces(size, data)):
        sums = sparse_digests(size, data, seed)
    bad = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size != size:
            raise SystemExit(f"sparse-check: '{path}' has the wrong size")
        for off, want in zip(pieces(size, data), sums):
            if hashlib.sha256(os.pread(fd, PIECE, off)).hexdigest() != want:
                bad += 1
    finally:
        os.close(fd)
    if bad:
        raise SystemExit(f"sparse-check: {bad} pieces of '{path}' differ")


def pread_extents(path, extents):
    """The changed bytes read as `dd` reads them (1 MiB at a time into one buffer), without a
    process per extent."""
    buf = memoryview(bytearray(MIB))
    fd = os.open(path, os.O_RDONLY)
    try:
        with open(extents) as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                try:
                    off, n = int(parts[0]), int(parts[1])
                except (ValueError, IndexError):
                    off = n = -1
                if off < 0 or n < 0:
                    raise SystemExit(f"pread-extents: bad line '{line.strip()}' in '{extents}'")
                while n > 0:
                    got = os.preadv(fd, [buf[:min(n, MIB)]], off)
                    if got <= 0:
                        raise SystemExit(f"pread-extents: '{path}' ends before {off}")
                    off += got
                    n -= got
    finally:
        os.close(fd)


def fio(path):
    """With --group_reporting fio reports all the jobs as one; without it, one entry a job:
    their reads and IOPS are summed, and the latency percentiles are the worst job's (the
    report has no merged ones)."""
    with open(path) as f:
        text = f.read()
    # fio may print notes before the JSON object
    j = json.loads(text[text.index("{"):])
    jobs = j.get("jobs") or []
    if not jobs:
        raise SystemExit("fio: the report has no job")
    ios, iops, p50, p99 = 0, 0.0, 0.0, 0.0
    for job in jobs:
        rd = job["read"]
        if job.get("error") or not rd.get("total_ios"):
            raise SystemExit(f"fio: the job failed (error {job.get('error')}, "
                             f"{rd.get('total_ios')} reads)")
        pct = rd.get("clat_ns", {}).get("percentile", {})
        ios += rd["total_ios"]
        iops += rd["iops"]
        p50 = max(p50, pct.get("50.000000", 0) / 1000.0)
        p99 = max(p99, pct.get("99.000000", 0) / 1000.0)
    print(f"{ios} {iops:.1f} {p50:.1f} {p99:.1f}")


def lmdb_meta():
    """Index and point metadata in a vault: the pages in use of every database but `chunks`
    (so also those of `tails`, the last bytes of incompressible frames), plus 48 bytes (node
    header, 32-byte key, overflow page number) per entry of `chunks`. Free pages are not
    counted."""
    psize = 4096
    db = None
    stats = {}
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("Page size:"):
            psize = int(line.split(":")[1])
        elif line.startswith("Status of "):
            db = line[len("Status of "):]
            stats[db] = {}
        elif db and ":" in line:
            k, v = line.split(":", 1)
            try:
                stats[db][k.strip()] = int(v.strip())
            except ValueError:
                pass
    total = 0
    tails = 0
    for name, s in stats.items():
        if name == "chunks":
            total += 48 * s.get("Entries", 0)
        else:
            n = psize * (s.get("Branch pages", 0) + s.get("Leaf pages", 0) +
                         s.get("Overflow pages", 0))
            total += n
            if name == "tails":
                tails = n
    print(total, tails)


# ---- the report ----------------------------------------------------------------------------

TOOLS = ["vmbak", "borg", "restic", "casync", "src"]
PEERS = ["borg", "restic", "casync"]
HEAD = {"vmbak": "vmbak", "borg": "borg", "restic": "restic", "casync": "casync",
        "src": "src"}

# (label, unit, better, key of vmbak, key of the peers[, key of src]) ; the key of src is that
# of the peers unless given. better: "low" or "high"; None: no ratio
ROWS = [
    ("full ingest base.raw", "s", "low", "ingest_base_raw_s", "ingest_base_raw_s"),
    ("full ingest base.luks", "s", "low", "ingest_base_luks_s", "ingest_base_luks_s"),
    ("incr day2.raw", "s", "low", "ingest_day2_raw_s", "ingest_day2_raw_s"),
    ("incr day2.raw, vmbak --changed (src: dd)", "s", "low", "ingest_day2_raw_changed_s",
     "ingest_day2_raw_s", "read_changed_raw_dd_s"),
    ("read changed bytes day2.raw, 1 process", "s", "low", None, None,
     "read_changed_raw_pread_s"),
    ("incr day2.luks", "s", "low", "ingest_day2_luks_s", "ingest_day2_luks_s"),
    ("incr day2.luks, vmbak --changed (src: dd)", "s", "low", "ingest_day2_luks_changed_s",
     "ingest_day2_luks_s", "read_changed_luks_dd_s"),
    ("read changed bytes day2.luks, 1 process", "s", "low", None, None,
     "read_changed_luks_pread_s"),
    ("peak RSS of ingest (max of all)", "MiB", "low", "rss_ingest", "rss_ingest"),
    ("stored after base.raw", "MiB", "low", "stored_base_raw", "stored_base_raw"),
    ("stored after base.luks", "MiB", "low", "stored_base_luks", "stored_base_luks"),
    ("stored after day2.raw", "MiB", "low", "stored_day2_raw", "stored_day2_raw"),
    ("stored after day2.raw, vmbak --changed", "MiB", "low", "stored_day2_raw_changed",
     "stored_day2_raw"),
    ("stored after day2.luks", "MiB", "low", "stored_day2_luks", "stored_day2_luks"),
    ("stored after day2.luks, vmbak --changed", "MiB", "low", "stored_day2_luks_changed",
     "stored_day2_luks"),
    ("growth day2.raw / changed bytes", "x", "low", "growth_day2_raw", "growth_day2_raw"),
    ("growth day2.raw, vmbak --changed", "x", "low", "growth_day2_raw_changed",
     "growth_day2_raw"),
    ("growth day2.luks / changed bytes", "x", "low", "growth_day2_luks", "growth_day2_luks"),
    ("growth day2.luks, vmbak --changed", "x", "low", "growth_day2_luks_changed",
     "growth_day2_luks"),
    ("metadata of day2.raw point", "KiB", None, "meta_day2_raw_changed", None),
    ("metadata of day2.raw point, in 'tails'", "KiB", None, "meta_tails_day2_raw_changed",
     None),
    ("metadata day2.raw / changed bytes", "%", None, "meta_day2_raw_changed_pct", None),
    ("metadata of day2.luks point", "KiB", None, "meta_day2_luks_changed", None),
    ("metadata of day2.luks point, in 'tails'", "KiB", None, "meta_tails_day2_luks_changed",
     None),
    ("metadata day2.luks / changed bytes", "%", None, "meta_day2_luks_changed_pct", None),
    ("cold seq read, dd bs=1M", "MB/s", "high", "seq_dd", "seq_dd"),
    ("cold seq read, cat", "MB/s", "high", "seq_cat", "seq_cat"),
    ("warm seq read, cat (page cache)", "MB/s", "high", "seq_cat_warm", "seq_cat_warm"),
    ("cold rand 4K read", "IOPS", "high", "rand_cold_iops", "rand_cold_iops"),
    ("cold rand 4K p50", "us", "low", "rand_cold_p50", "rand_cold_p50"),
    ("cold rand 4K p99", "us", "low", "rand_cold_p99", "rand_cold_p99"),
    ("cold rand 4K read, 8 readers", "IOPS", "high", "rand_par_iops", "rand_par_iops"),
    ("cold rand 4K p50, 8 readers", "us", "low", "rand_par_p50", "rand_par_p50"),
    ("cold rand 4K p99, 8 readers", "us", "low", "rand_par_p99", "rand_par_p99"),
    ("warm rand 4K read", "IOPS", "high", "rand_warm_iops", "rand_warm_iops"),
    ("warm rand 4K p50", "us", "low", "rand_warm_p50", "rand_warm_p50"),
    ("warm rand 4K p99", "us", "low", "rand_warm_p99", "rand_warm_p99"),
    ("peak RSS of the mount", "MiB", "low", "rss_mount", "rss_mount"),
    ("peak RSS of the mount, 8 readers", "MiB", "low", "rss_mount_par", "rss_mount_par"),
    ("1 TiB sparse, 1 GiB data: ingest", "s", "low", "scale_ingest_s", "scale_ingest_s"),
    ("1 TiB sparse: peak RSS of ingest", "MiB", "low", "scale_rss_ingest", "scale_rss_ingest"),
    ("1 TiB sparse: stored", "MiB", "low", "scale_stored", "scale_stored"),
    ("1 TiB sparse: read the 1 GiB of data", "s", "low", "scale_read_s", "scale_read_s"),
    ("1 TiB sparse: peak RSS of the mount", "MiB", "low", "scale_rss_mount",
     "scale_rss_mount"),
]

NOTE = [
    "'vs best': how many times better vmbak is than the best peer (borg, restic, casync) in the",
    "same row; 'vs src': the same against the src column; below 1.00x vmbak is worse. src: cp",
    "--sparse=always of the image for ingest and stored; cat, dd bs=1M and fio of the image file",
    "for reads; in the --changed rows, a cold read of only the changed extents of day2, one",
    "`dd iflag=skip_bytes,count_bytes bs=1M` per extent (the row below it: the same reads by one",
    "process with pread, to tell process start-up from reading). Ingest times run until the",
    "data is on disk (the command, then syncfs). Cold: page cache dropped and the mount started",
    "afresh. 8 readers: fio --numjobs=8 --group_reporting, each job its own offsets from the",
    "same seed (job 1 those of the single reader), as many reads in all as the single reader.",
    "Stored: du of the repository after each step, cumulative: for vmbak the blocks data.mdb",
    "takes, i.e. every LMDB page written, in use or free (LMDB keeps freed pages in the file",
    "for reuse), chunk pages rounded to 4 KiB, and the 'tails' database's pages. Growth: the",
    "day-2 step's increase of that du over its changed bytes (the --changed rows from the du",
    "of their own copy of the vault). Metadata of a point: the increase of vmbak's LMDB pages",
    "in use in every database but 'chunks' (mdb_stat), plus 48 bytes per new chunk entry;",
    "tails (the last <= 256 bytes of an incompressible frame, kept in the database 'tails' so",
    "that the frame does not take one more page) are chunk data but count here as metadata,",
    "as they always have: their share is the 'in tails' row; free pages do not count. RSS:",
    "GNU time for ingest, VmHWM of the mount process before unmounting; 'peak RSS of the",
    "mount' is the max over the single-reader tests (dd, cat, fio; the peers' cat does not",
    "run under BENCH_QUICK), the 8 readers apart.",
]


def conv(unit, key, v):
    """Raw values are seconds, bytes, KiB (rss_*), MB/s, IOPS, us, ratios."""
    if unit == "MiB":
        return v / 1024.0 if key.startswith(("rss", "scale_rss")) else v / MIB
    if unit == "KiB":
        return v / 1024.0
    return v


def fmt(unit, v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if unit in ("IOPS", "MB/s", "us", "MiB", "KiB"):
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    if unit == "%":
        return f"{v:.3f}"
    return f"{v:.2f}"


def better_ratio(better, v, other):
    """How many times better v is than other (> 1: v is better); None if either is missing."""
    if not better or not isinstance(v, float) or not isinstance(other, float):
        return None
    if v <= 0 or other <= 0:
        return None
    return other / v if better == "low" else v / other


def report(raw_path, notes_path, outdir):
    raw = {}
    meta = {}
    with open(raw_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            k, _, v = line.partition("\t")
            if k.startswith("meta."):
                meta[k[5:]] = v
                continue
            try:
                raw[k] = float(v)
            except ValueError:
                raw[k] = v
    notes = []
    if os.path.exists(notes_path):
        with open(notes_path) as f:
            notes = [l.rstrip("\n") for l in f if l.strip()]

    def val(tool, key, unit):
        if key is None:
            return None
        v = raw.get(f"{tool}.{key}")
        if v is None or isinstance(v, str):
            return v
        return conv(unit, key, v)

    rows = []
    for label, unit, better, vkey, pkey, *rest in ROWS:
        skey = rest[0] if rest else pkey
        cells = {"vmbak": val("vmbak", vkey, unit), "src": val("src", skey, unit)}
        for t in PEERS:
            cells[t] = val(t, pkey, unit)
        if all(cells[t] is None for t in TOOLS):
            continue
        best = None
        nums = [(t, cells[t]) for t in PEERS if isinstance(cells[t], float)]
        if better and nums:
            best = (min if better == "low" else max)(nums, key=lambda x: x[1])
        rows.append({"label": label, "unit": unit, "better": better, "cells": cells,
                     "best_peer": best[0] if best else None,
                     "best_value": best[1] if best else None,
                     "ratio": better_ratio(better, cells["vmbak"], best[1] if best else None),
                     "src_ratio": better_ratio(better, cells["vmbak"], cells["src"])})

    def x(r):
        return f"{r:.2f}x" if r is not None else "-"

    head = (["measurement", "unit"] + [HEAD[t] for t in TOOLS] +
            ["best peer", "vs best", "vs src"])
    table = []
    for r in rows:
        c = r["cells"]
        table.append([r["label"], r["unit"]] + [fmt(r["unit"], c[t]) for t in TOOLS] +
                     [r["best_peer"] or "-", x(r["ratio"]), x(r["src_ratio"])])
    widths = [max(len(x[i]) for x in [head] + table) for i in range(len(head))]

    def line(cols):
        out = []
        for i, x in enumerate(cols):
            out.append(x.ljust(widths[i]) if i < 2 else x.rjust(widths[i]))
        return "  ".join(out).rstrip()

    txt = []
    for k in ("title", "command", "machine", "modes", "corpus"):
        if k in meta:
            txt.append(meta[k])
    txt.append("")
    txt.append(line(head))
    txt.append(line(["-" * w for w in widths]))
    txt += [line(t) for t in table]
    txt.append("")
    txt += NOTE

    targets = evaluate(raw, meta)
    if targets:
        txt.append("")
        txt.append("issue-16 targets (ratios from this run):")
        w = max(len(t["target"]) for t in targets)
        mw = max(len(t["measured"]) for t in targets)
        for t in targets:
            txt.append(f"  {t['target'].ljust(w)}  {t['measured'].ljust(mw)}  {t['verdict']}"
                       .rstrip())
    if notes:
        txt.append("")
        txt.append("notes:")
        txt += [f"  {n}" for n in notes]
    text = "\n".join(txt) + "\n"
    with open(os.path.join(outdir, "results.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, "results.tsv"), "w") as f:
        f.write("\t".join(head) + "\n")
        for r in rows:
            c = r["cells"]
            f.write("\t".join([r["label"], r["unit"]] +
                              ["" if c[t] is None else str(c[t]) for t in TOOLS] +
                              [r["best_peer"] or "",
                               "" if r["ratio"] is None else f"{r['ratio']:.4f}",
                               "" if r["src_ratio"] is None else f"{r['src_ratio']:.4f}"]) +
                    "\n")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "targets": targets, "notes": notes,
                   "raw": raw}, f, indent=2)
        f.write("\n")
    sys.stdout.write(text)


def evaluate(raw, meta):
    """The targets of issue 16, each judged from figures of this run: met, NOT met, or n/a with
    the reason a figure is missing."""
    peers_run = set((meta.get("peers") or "").split())
    quick = meta.get("quick") == "1"
    cold_ok = meta.get("root", "1") == "1"

    def g(k):
        v = raw.get(k)
        return v if isinstance(v, float) else None

    def why(k):
        """Why the figure k ("tool.key") is missing."""
        tool, key = k.split(".", 1)
        if tool in PEERS and tool not in peers_run:
            return f"{tool} not run (BENCH_PEERS, or not installable)"
        if key.startswith("scale_") and meta.get("scale") == "0":
            return "1 TiB case skipped (BENCH_QUICK or BENCH_SCALE=0)"
        if tool in PEERS and quick and key in ("seq_cat", "rand_par_iops"):
            return f"{tool}: not run under BENCH_QUICK"
        return f"{k}: its step failed or did not run (see notes)"

    def best(key, better="low"):
        """(peer, value) of the best peer, or (None, why none)"""
        nums = [(t, g(f"{t}.{key}")) for t in PEERS if g(f"{t}.{key}") is not None]
        if nums:
            return (min if better == "low" else max)(nums, key=lambda x: x[1])
        if not peers_run:
            return None, "no peer run (BENCH_PEERS)"
        return None, "; ".join(why(f"{t}.{key}") for t in sorted(peers_run))

    out = []

    def add(target, ok, measured, na=None):
        if ok is None:
            verdict = f"n/a (not measured: {na or 'a figure is missing'})"
        else:
            verdict = "met" if ok else "NOT met"
        out.append({"target": target, "measured": measured if ok is not None else "-",
                    "verdict": verdict})

    def need(*keys, cold=False):
        """None if every figure is there (and cold ones were cold), else why not."""
        if cold and not cold_ok:
            return "not root: the page cache was not dropped"
        for k in keys:
            if g(k) is None:
                return why(k)
        return None

    # full ingest: the fastest peer, and cp --sparse=always of the same file
    for img, cp_max, cp_what in (("raw", 1.0, "cp --sparse=always time"),
                                 ("luks", 1.2, "1.2x cp --sparse=always time")):
        k = f"ingest_base_{img}_s"
        t = f"full ingest base.{img} >= 5x fastest peer"
        b = best(k)
        na = need(f"vmbak.{k}") or (b[1] if b[0] is None else None)
        if na:
            add(t, None, "", na)
        else:
            v = g(f"vmbak.{k}")
            add(t, b[1] / v >= 5, f"{v:.2f} s vs {b[0]} {b[1]:.2f} s: {b[1] / v:.2f}x")
        t = f"full ingest base.{img} <= {cp_what}"
        na = need(f"vmbak.{k}", f"src.{k}")
        if na:
            add(t, None, "", na)
        else:
            v, c = g(f"vmbak.{k}"), g(f"src.{k}")
            add(t, v <= cp_max * c, f"{v:.2f} s vs cp {c:.2f} s: {v / c:.2f}x cp's time")

    # incremental with --changed: the fastest peer's incremental, and reading only the changed
    # bytes with dd (judged) or in one process (shown)
    for img in ("raw", "luks"):
        k = f"vmbak.ingest_day2_{img}_changed_s"
        t = f"incr day2.{img} --changed >= 20x fastest peer"
        b = best(f"ingest_day2_{img}_s")
        na = need(k) or (b[1] if b[0] is None else None)
        if na:
            add(t, None, "", na)
        else:
            v = g(k)
            add(t, b[1] / v >= 20, f"{v:.2f} s vs {b[0]} {b[1]:.2f} s: {b[1] / v:.1f}x")
        t = f"incr day2.{img} --changed <= 2x dd of changed bytes"
        d = f"src.read_changed_{img}_dd_s"
        na = need(k, d, cold=True)
        if na:
            add(t, None, "", na)
        else:
            v, c = g(k), g(d)
            m = f"{v:.2f} s vs dd {c:.2f} s: {v / c:.2f}x"
            p = g(f"src.read_changed_{img}_pread_s")
            if p:
                m += f" (1 process: {p:.2f} s, {v / p:.1f}x)"
            add(t, v <= 2 * c, m)

    # cold sequential read through the mount
    for how in ("dd", "cat"):
        t = f"cold seq read ({how}) >= 4x borg mount"
        na = need(f"vmbak.seq_{how}", f"borg.seq_{how}", cold=True)
        if na:
            add(t, None, "", na)
        else:
            v, b = g(f"vmbak.seq_{how}"), g(f"borg.seq_{how}")
            add(t, v / b >= 4, f"{v:.0f} vs {b:.0f} MB/s: {v / b:.2f}x")
    for how in ("dd", "cat"):
        t = f"cold seq read ({how}) >= 0.5x cold cat of src"
        na = need(f"vmbak.seq_{how}", "src.seq_cat", cold=True)
        if na:
            add(t, None, "", na)
        else:
            v, c = g(f"vmbak.seq_{how}"), g("src.seq_cat")
            add(t, v / c >= 0.5, f"{v:.0f} vs {c:.0f} MB/s: {v / c:.2f}x")
    t = "cold seq read through the mount: dd bs=1M >= cat"
    na = need("vmbak.seq_dd", "vmbak.seq_cat", cold=True)
    if na:
        add(t, None, "", na)
    else:
        v, c = g("vmbak.seq_dd"), g("vmbak.seq_cat")
        add(t, v >= c, f"{v:.0f} vs {c:.0f} MB/s: {v / c:.2f}x")

    # cold random 4 KiB reads
    t = "cold rand 4K, 1 reader >= 20,000 IOPS"
    na = need("vmbak.rand_cold_iops", cold=True)
    v = g("vmbak.rand_cold_iops")
    add(t, None if na else v >= 20000, "" if na else f"{v:.0f} IOPS", na)
    t = "cold rand 4K, 1 reader: p99 <= 1 ms"
    na = need("vmbak.rand_cold_p99", cold=True)
    v = g("vmbak.rand_cold_p99")
    add(t, None if na else v <= 1000, "" if na else f"{v:.0f} us", na)
    t = "cold rand 4K, 8 readers >= 2x 1 reader"
    na = need("vmbak.rand_par_iops", "vmbak.rand_cold_iops", cold=True)
    if na:
        add(t, None, "", na)
    else:
        p, v = g("vmbak.rand_par_iops"), g("vmbak.rand_cold_iops")
        add(t, p >= 2 * v, f"{p:.0f} vs {v:.0f} IOPS: {p / v:.2f}x")

    # growth and metadata of the day-2 points with --changed; without it, shown
    for img in ("raw", "luks"):
        t = f"growth day2.{img} --changed <= 1.1x changed"
        k = f"vmbak.growth_day2_{img}_changed"
        na = need(k)
        if na:
            add(t, None, "", na)
        else:
            w = g(f"vmbak.growth_day2_{img}")
            add(t, g(k) <= 1.1, f"{g(k):.3f}x (without --changed " +
                (f"{w:.3f}x)" if w is not None else "not measured)"))
    for img in ("raw", "luks"):
        t = f"metadata of day2.{img} point <= 1% changed"
        k = f"vmbak.meta_day2_{img}_changed_pct"
        na = need(k)
        if na:
            add(t, None, "", na)
        else:
            m = f"{g(k):.3f}%"
            b, tl = g(f"vmbak.meta_day2_{img}_changed"), g(f"vmbak.meta_tails_day2_{img}_changed")
            if b is not None and tl is not None:
                m += f" ({b / 1024:.0f} KiB, {tl / 1024:.0f} KiB of it tails)"
            add(t, g(k) <= 1.0, m)

    # peak RSS
    t = "peak RSS of the mount <= 2x borg mount"
    na = need("vmbak.rss_mount", "borg.rss_mount")
    if na:
        add(t, None, "", na)
    else:
        v, b = g("vmbak.rss_mount"), g("borg.rss_mount")
        add(t, v <= 2 * b, f"{v / 1024:.0f} vs {b / 1024:.0f} MiB: {v / b:.2f}x")
    for k, what in (("scale_rss_ingest", "ingest"), ("scale_rss_mount", "mount")):
        t = f"1 TiB sparse: {what} RSS < 256 MiB"
        na = need(f"vmbak.{k}")
        v = g(f"vmbak.{k}")
        add(t, None if na else v < 256 * 1024, "" if na else f"{v / 1024:.0f} MiB", na)
    return out


def main():
    a = sys.argv[1:]
    if not a:
        raise SystemExit(__doc__)
    cmd = a[0]
    if cmd == "extents" and len(a) in (4, 5):
        extents(a[1], a[2], a[3], int(a[4]) if len(a) == 5 else 65536)
    elif cmd == "sparse-make" and len(a) == 5:
        sparse_make(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif cmd == "sparse-check" and len(a) in (5, 6):
        sparse_check(a[1], int(a[2]), int(a[3]), int(a[4]), a[5] if len(a) == 6 else None)
    elif cmd == "pread-extents" and len(a) == 3:
        pread_extents(a[1], a[2])
    elif cmd == "fio" and len(a) == 2:
        fio(a[1])
    elif cmd == "lmdb-meta" and len(a) == 1:
        lmdb_meta()
    elif cmd == "report" and len(a) == 4:
        report(a[1], a[2], a[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
