#!/usr/bin/env python3
"""tests/bench/corpus.py OUTDIR [SIZE_GIB]: the project's own benchmark corpus.

Makes, in OUTDIR, the same bytes on every machine (everything comes from fixed seeds, nothing
from the machine's own files):
  base.raw           an ext4 disk image of SIZE_GIB GiB (default 3, sparse), about half full of
                     files of the kinds a VM disk holds: text (logs, sources, configuration),
                     structured binaries (record tables, executables-like), incompressible data
                     (media, archives), copies of earlier files, and sparse files
  day2.raw           base.raw after a day of use: scattered in-place rewrites of about 1% of the
                     data (4 KiB to 256 KiB each) and a new 40 MiB region where there was none
  day2.extents       what changed, "OFFSET LENGTH" per line (what a dirty bitmap would say)
  base.luks, day2.luks, day2.luks.extents
                     the same two disks under LUKS1 (qemu's luks driver; passphrase in pass.txt):
                     day2.luks differs from base.luks only in the changed sectors, as a real
                     guest's disk would
A finished corpus leaves OUTDIR/.done holding SIZE_GIB; running again with the same size does
nothing. Needs mkfs.ext4 (e2fsprogs), qemu-img and qemu-io (qemu-utils).

tests/bench/run.sh uses ../shared/bench/make-corpus.sh when it exists (the corpus the project's
reported figures are measured on), and this one otherwise.
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
WORDS = ("the of and to in is was for on that with as by at from disk block chunk vault point "
         "backup restore kernel module device error warning info debug request reply socket "
         "timeout retry session user host key value config option path file mount read write "
         "start stop done failed ok").split()


def text_file(r, size):
    """Log- or source-like text: lines of words with numbers, highly compressible."""
    out, n = [], 0
    while n < size:
        line = "%08d %s %s\n" % (r.randrange(10 ** 8), r.choice(("INFO", "WARN", "DEBUG")),
                                  " ".join(r.choice(WORDS) for _ in range(r.randrange(4, 16))))
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def record_file(r, size):
    """A table of fixed-size records with small varying fields: compresses a few times."""
    rec = bytearray(r.randbytes(64))
    out = bytearray()
    while len(out) < size:
        i = r.randrange(0, 64, 4)
        rec[i:i + 4] = r.randrange(1 << 16).to_bytes(4, "little")
        out += rec
    return bytes(out[:size])


def random_file(r, size):
    """Already compressed or encrypted content: incompressible."""
    return r.randbytes(size)


def fill(stage, r, budget):
    """Writes files into stage until about budget bytes; returns how many."""
    kinds = [(text_file, 30), (record_file, 35), (random_file, 30)]
    made, used, k = [], 0, 0
    while used < budget:
        kind = r.choices([f for f, _ in kinds], [w for _, w in kinds])[0]
        size = min(int(r.lognormvariate(11.5, 2.0)) + 1, 64 * MIB, budget - used + 1)
        d = os.path.join(stage, "d%03d" % (k % 97))
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "f%06d" % k)
        if made and r.random() < 0.05:
            # A copy of an earlier file (a second kernel, a copied package cache).
            shutil.copyfile(r.choice(made), path)
        elif r.random() < 0.02:
            # A sparse file with a little data at both ends (a preallocated database).
            with open(path, "wb") as f:
                f.write(record_file(r, 64 * KIB))
                f.seek(size)
                f.write(text_file(r, 4 * KIB))
            size = 68 * KIB
        else:
            with open(path, "wb") as f:
                f.write(kind(r, size))
        made.append(path)
        used += size
        k += 1
    return k


def data_ranges(path, size):
    """The (start, end) ranges of path that hold data, from SEEK_DATA/SEEK_HOLE."""
    fd = os.open(path, os.O_RDONLY)
    out, off = [], 0
    try:
        while off < size:
            try:
                s = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            e = os.lseek(fd, s, os.SEEK_HOLE)
            out.append((s, e))
            off = e
    finally:
        os.close(fd)
    return out


def day_of_changes(r, data, size):
    """About 1% of the used bytes rewritten in place, plus 40 MiB written into a free region."""
    used = sum(e - s for s, e in data)
    big = [(s, e) for s, e in data if e - s >= 64 * KIB]
    ext, n = [], 0
    while n < used // 100:
        s, e = r.choice(big)
        length = r.choice((4 * KIB, 4 * KIB, 8 * KIB, 16 * KIB, 64 * KIB, 256 * KIB))
        off = (r.randrange(s, max(s + 1, e - length)) // (4 * KIB)) * (4 * KIB)
        length = min(length, e - off)
        ext.append((off, length))
        n += length
    # The largest hole in the second half of the disk gets a new 40 MiB file's blocks.
    holes, prev = [], 0
    for s, e in data + [(size, size)]:
        if s - prev >= 64 * MIB:
            holes.append((prev, s))
        prev = max(prev, e)
    late = [h for h in holes if h[0] >= size // 2] or holes
    hs, he = max(late, key=lambda h: h[1] - h[0])
    ext.append(((hs + (he - hs) // 2) // (4 * KIB) * (4 * KIB), 40 * MIB))
    # Overlapping rewrites merged, so the extents are what a bitmap would report.
    merged = []
    for off, length in sorted(ext):
        if merged and off <= merged[-1][0] + merged[-1][1]:
            o, l = merged[-1]
            merged[-1] = (o, max(l, off + length - o))
        else:
            merged.append((off, length))
    return merged


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: corpus.py OUTDIR [SIZE_GIB]")
    out = sys.argv[1]
    gib = int(sys.argv[2]) if len(sys.argv) == 3 else 3
    if gib < 1:
        sys.exit("corpus.py: SIZE_GIB must be at least 1")
    os.makedirs(out, exist_ok=True)
    os.chdir(out)
    done = os.path.join(out, ".done")
    if os.path.exists(".done") and open(".done").read().strip() == str(gib):
        print("corpus in %s is ready" % out)
        return
    if os.path.exists(".done"):
        os.unlink(".done")
    size = gib * GIB
    r = random.Random(20261206)
    stage = tempfile.mkdtemp(prefix="stage.", dir=".")
    try:
        files = fill(stage, r, size * 50 // 100)
        for root, dirs, names in os.walk(stage):
            for n in dirs + names:
                os.utime(os.path.join(root, n), (1767225600, 1767225600))
        env = dict(os.environ, E2FSPROGS_FAKE_TIME="1767225600")
        if os.path.exists("base.raw"):
            os.unlink("base.raw")
        run("mkfs.ext4", "-q", "-F", "-U", "6b2f1c3e-8d4a-4f5e-9a7b-0c1d2e3f4a5b",
            "-E", "hash_seed=1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9,lazy_itable_init=0",
            "-d", stage, "base.raw", "%dG" % gib, env=env)
    finally:
        shutil.rmtree(stage)
    # mke2fs -d copies each file's ctime, which cannot be set on the staged files, and the
    # directories' atime moves as they are read: every inode in use gets the fixed time
    # instead, so the image is the same bytes on every run.
    head = subprocess.run(["dumpe2fs", "-h", "base.raw"], check=True, capture_output=True,
                          text=True).stdout
    fields = dict(l.split(":", 1) for l in head.splitlines() if ":" in l)
    used = int(fields["Inode count"]) - int(fields["Free inodes"])
    with open("ctime.debugfs", "w") as f:
        for i in range(1, used + 12):
            f.write("sif <%d> ctime 0x%x\nsif <%d> atime 0x%x\n" % (i, 1767225600, i, 1767225600))
    run("debugfs", "-w", "-f", "ctime.debugfs", "base.raw", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=env)
    os.unlink("ctime.debugfs")
    print("base.raw: %d files" % files)

    ext = day_of_changes(r, data_ranges("base.raw", size), size)
    with open("day2.extents", "w") as f:
        f.writelines("%d %d\n" % e for e in ext)
    print("changed extents: %d, %d bytes" % (len(ext), sum(l for _, l in ext)))
    run("cp", "--sparse=always", "base.raw", "day2.raw")
    w = random.Random(61206)
    with open("day2.raw", "r+b") as f:
        for off, length in ext:
            f.seek(off)
            f.write(w.randbytes(length))

    with open("pass.txt", "w") as f:
        f.write("vmbak-corpus-passphrase")
    secret = ["--object", "secret,id=s0,file=pass.txt"]
    luks = "driver=luks,key-secret=s0,file.filename=day2.luks"
    for name in ("base.luks", "day2.luks"):
        if os.path.exists(name):
            os.unlink(name)
    # qemu-img times its PBKDF rounds and now and then cannot ("Unable to get accurate CPU
    # usage"): a few tries.
    for attempt in range(5):
        p = subprocess.run(["qemu-img", "convert", "-O", "luks"] + secret +
                           ["-o", "key-secret=s0,iter-time=100", "base.raw", "base.luks"])
        if p.returncode == 0:
            break
        if attempt == 4:
            sys.exit("corpus.py: qemu-img convert -O luks failed")
    run("cp", "--sparse=always", "base.luks", "day2.luks")
    # The day's changes written through the encryption, so every other sector keeps its
    # ciphertext.
    with open("day2.raw", "rb") as src:
        for off, length in ext:
            src.seek(off)
            run("qemu-io", *secret, "--image-opts", luks, "-c",
                "write -s /dev/stdin %d %d" % (off, length), input=src.read(length),
                stdout=subprocess.DEVNULL)
    run("qemu-img", "compare", *secret, "--image-opts", luks,
        "driver=raw,file.filename=day2.raw", stdout=subprocess.DEVNULL)
    shift = os.path.getsize("base.luks") - os.path.getsize("base.raw")
    with open("day2.luks.extents", "w") as f:
        f.writelines("%d %d\n" % (off + shift, length) for off, length in ext)
    with open(done, "w") as f:
        f.write("%d\n" % gib)


if __name__ == "__main__":
    main()
