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
  benchlib.py fio JSON                           "ios iops p50_us p99_us" of a fio JSON report
  benchlib.py lmdb-meta                          reads `mdb_stat -ea` on stdin, prints the bytes
                                                 of index and point metadata (below)
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


def fio(path):
    with open(path) as f:
        text = f.read()
    # fio may print notes before the JSON object
    j = json.loads(text[text.index("{"):])
    job = j["jobs"][0]
    rd = job["read"]
    if job.get("error") or not rd.get("total_ios"):
        raise SystemExit(f"fio: the job failed (error {job.get('error')}, "
                         f"{rd.get('total_ios')} reads)")
    pct = rd.get("clat_ns", {}).get("percentile", {})
    p50 = pct.get("50.000000", 0) / 1000.0
    p99 = pct.get("99.000000", 0) / 1000.0
    print(f"{rd['total_ios']} {rd['iops']:.1f} {p50:.1f} {p99:.1f}")


def lmdb_meta():
    """Index and point metadata in a vault: the pages of every database but `chunks`, plus
    48 bytes (node header, 32-byte key, overflow page number) per entry of `chunks`."""
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
    for name, s in stats.items():
        if name == "chunks":
            total += 48 * s.get("Entries", 0)
        else:
            total += psize * (s.get("Branch pages", 0) + s.get("Leaf pages", 0) +
                              s.get("Overflow pages", 0))
    print(total)


# ---- the report ----------------------------------------------------------------------------

TOOLS = ["vmbak", "borg", "restic", "casync", "src"]
PEERS = ["borg", "restic", "casync"]
HEAD = {"vmbak": "vmbak", "borg": "borg", "restic": "restic", "casync": "casync",
        "src": "cp/cat src"}

# (label, unit, better, key of vmbak, key of the peers and of src or None)
# better: "low" or "high"; None: no ratio
ROWS = [
    ("full ingest base.raw", "s", "low", "ingest_base_raw_s", "ingest_base_raw_s"),
    ("full ingest base.luks", "s", "low", "ingest_base_luks_s", "ingest_base_luks_s"),
    ("incr day2.raw", "s", "low", "ingest_day2_raw_s", "ingest_day2_raw_s"),
    ("incr day2.raw, vmbak --changed", "s", "low", "ingest_day2_raw_changed_s",
     "ingest_day2_raw_s"),
    ("incr day2.luks", "s", "low", "ingest_day2_luks_s", "ingest_day2_luks_s"),
    ("incr day2.luks, vmbak --changed", "s", "low", "ingest_day2_luks_changed_s",
     "ingest_day2_luks_s"),
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
    ("metadata of day2.luks point", "KiB", None, "meta_day2_luks_changed", None),
    ("metadata day2.luks / changed bytes", "%", None, "meta_day2_luks_changed_pct", None),
    ("cold seq read, dd bs=1M", "MB/s", "high", "seq_dd", "seq_dd"),
    ("cold seq read, cat", "MB/s", "high", "seq_cat", "seq_cat"),
    ("warm seq read, cat (page cache)", "MB/s", "high", "seq_cat_warm", "seq_cat_warm"),
    ("cold rand 4K read", "IOPS", "high", "rand_cold_iops", "rand_cold_iops"),
    ("cold rand 4K p50", "us", "low", "rand_cold_p50", "rand_cold_p50"),
    ("cold rand 4K p99", "us", "low", "rand_cold_p99", "rand_cold_p99"),
    ("warm rand 4K read", "IOPS", "high", "rand_warm_iops", "rand_warm_iops"),
    ("warm rand 4K p50", "us", "low", "rand_warm_p50", "rand_warm_p50"),
    ("warm rand 4K p99", "us", "low", "rand_warm_p99", "rand_warm_p99"),
    ("peak RSS of the mount", "MiB", "low", "rss_mount", "rss_mount"),
    ("1 TiB sparse, 1 GiB data: ingest", "s", "low", "scale_ingest_s", "scale_ingest_s"),
    ("1 TiB sparse: peak RSS of ingest", "MiB", "low", "scale_rss_ingest", "scale_rss_ingest"),
    ("1 TiB sparse: stored", "MiB", "low", "scale_stored", "scale_stored"),
    ("1 TiB sparse: read the 1 GiB of data", "s", "low", "scale_read_s", "scale_read_s"),
    ("1 TiB sparse: peak RSS of the mount", "MiB", "low", "scale_rss_mount",
     "scale_rss_mount"),
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
    for label, unit, better, vkey, pkey in ROWS:
        cells = {"vmbak": val("vmbak", vkey, unit)}
        for t in PEERS + ["src"]:
            cells[t] = val(t, pkey, unit)
        if all(cells[t] is None for t in TOOLS):
            continue
        best = None
        ratio = None
        nums = [(t, cells[t]) for t in PEERS if isinstance(cells[t], float)]
        if better and nums:
            best = (min if better == "low" else max)(nums, key=lambda x: x[1])
            v = cells["vmbak"]
            if isinstance(v, float) and v > 0 and best[1] > 0:
                ratio = best[1] / v if better == "low" else v / best[1]
        rows.append({"label": label, "unit": unit, "better": better, "cells": cells,
                     "best_peer": best[0] if best else None,
                     "best_value": best[1] if best else None, "ratio": ratio})

    head = ["measurement", "unit"] + [HEAD[t] for t in TOOLS] + ["best peer", "vmbak vs best"]
    table = []
    for r in rows:
        c = r["cells"]
        table.append([r["label"], r["unit"]] + [fmt(r["unit"], c[t]) for t in TOOLS] +
                     [r["best_peer"] or "-",
                      f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"])
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
    txt += ["'vmbak vs best': how many times better vmbak is than the best peer (borg, restic,",
            "casync) in the same row; below 1.00x it is worse. Ingest times run until the data is",
            "on disk (the command, then syncfs). Stored: du of the repository after each step,",
            "cumulative; growth: the day-2 step's increase over its changed bytes. Metadata of a",
            "point: the increase of vmbak's LMDB pages in every database but 'chunks', plus 48",
            "bytes per new chunk entry (mdb_stat). RSS: GNU time for ingest, VmHWM of the mount",
            "process before unmounting."]

    targets = evaluate(raw)
    if targets:
        txt.append("")
        txt.append("issue-5 targets (ratios from this run):")
        w = max(len(t["target"]) for t in targets)
        for t in targets:
            txt.append(f"  {t['target'].ljust(w)}  {t['measured']:<34} {t['verdict']}")
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
                               "" if r["ratio"] is None else f"{r['ratio']:.4f}"]) + "\n")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "targets": targets, "notes": notes,
                   "raw": raw}, f, indent=2)
        f.write("\n")
    sys.stdout.write(text)


def evaluate(raw):
    def g(k):
        v = raw.get(k)
        return v if isinstance(v, float) else None

    def best(key, better="low"):
        nums = [(t, g(f"{t}.{key}")) for t in PEERS if g(f"{t}.{key}") is not None]
        if not nums:
            return None
        return (min if better == "low" else max)(nums, key=lambda x: x[1])

    out = []

    def add(target, ok, measured):
        out.append({"target": target, "measured": measured,
                    "verdict": "n/a" if ok is None else ("met" if ok else "NOT met")})

    for img in ("raw", "luks"):
        v = g(f"vmbak.ingest_base_{img}_s")
        b = best(f"ingest_base_{img}_s")
        if v and b:
            r = b[1] / v
            add(f"full ingest base.{img} >= 5x best peer", r >= 5,
                f"{v:.2f} s vs {b[0]} {b[1]:.2f} s: {r:.2f}x")
        else:
            add(f"full ingest base.{img} >= 5x best peer", None, "not measured")
    for img in ("raw", "luks"):
        v = g(f"vmbak.ingest_day2_{img}_changed_s")
        b = best(f"ingest_day2_{img}_s")
        if v and b:
            r = b[1] / v
            add(f"incr day2.{img} --changed >= 20x best peer", r >= 20,
                f"{v:.2f} s vs {b[0]} {b[1]:.2f} s: {r:.1f}x")
        else:
            add(f"incr day2.{img} --changed >= 20x best peer", None, "not measured")
    v = g("vmbak.growth_day2_luks_changed")
    add("growth day2.luks <= 1.2x changed", None if v is None else v <= 1.2,
        "not measured" if v is None else f"{v:.2f}x (without --changed "
        f"{g('vmbak.growth_day2_luks') or float('nan'):.2f}x)")
    v = g("vmbak.meta_day2_luks_changed_pct")
    add("metadata per incr point <= 1% changed", None if v is None else v <= 1.0,
        "not measured" if v is None else f"{v:.3f}% (day2.luks)")
    for how in ("dd", "cat"):
        v = g(f"vmbak.seq_{how}")
        b = g(f"borg.seq_{how}")
        if v and b:
            add(f"cold seq read ({how}) >= 4x borg mount", v / b >= 4,
                f"{v:.0f} vs {b:.0f} MB/s: {v / b:.2f}x")
        else:
            add(f"cold seq read ({how}) >= 4x borg mount", None, "not measured")
        w = g("src.seq_cat_warm")
        if v and w:
            add(f"cold seq read ({how}) >= 0.5x cat warm src", v / w >= 0.5,
                f"{v:.0f} vs {w:.0f} MB/s: {v / w:.2f}x")
    v = g("vmbak.rand_cold_iops")
    b = best("rand_cold_iops", "high")
    if v and b:
        add("cold rand 4K >= 5x best peer", v / b[1] >= 5,
            f"{v:.0f} vs {b[0]} {b[1]:.0f} IOPS: {v / b[1]:.1f}x")
    else:
        add("cold rand 4K >= 5x best peer", None, "not measured")
    add("cold rand 4K >= 10,000 IOPS", None if v is None else v >= 10000,
        "not measured" if v is None else f"{v:.0f} IOPS")
    for k, what in (("scale_rss_ingest", "ingest"), ("scale_rss_mount", "mount")):
        v = g(f"vmbak.{k}")
        add(f"1 TiB sparse: {what} RSS < 256 MiB", None if v is None else v < 256 * 1024,
            "not measured" if v is None else f"{v / 1024:.0f} MiB")
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
