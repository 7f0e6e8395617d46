#!/usr/bin/python3
"""pagedamage.py: the pages of an LMDB data.mdb, by kind and database (tests/fuse/pagedamage.sh).

Reads the file as lmdb's mdb.c lays it out (LMDB 0.9), knowing nothing of what the records
mean. Every page begins with a 16-byte header: mp_pgno (8), mp_pad (2), mp_flags (2), then
mp_lower and mp_upper (2 + 2), or for an overflow page mp_pages (4). Flags: P_BRANCH 0x01,
P_LEAF 0x02, P_OVERFLOW 0x04, P_META 0x08, P_LEAF2 0x20. Pages 0 and 1 are the meta pages;
the newer one (larger txnid) holds the roots of the free-page database (FREE_DBI) and of the
main database, whose records name the other databases (each value an MDB_db: md_pad (4),
md_flags (2), md_depth (2), md_branch_pages, md_leaf_pages, md_overflow_pages, md_entries,
md_root (8 each)). A branch node is mn_lo, mn_hi, mn_flags, mn_ksize (2 each), the key; its
child page is lo | hi << 16 | flags << 32. A leaf node has the same header, the data size in
lo | hi << 16; flag F_BIGDATA (0x01) means the data is the 8-byte number of its first overflow
page, F_SUBDATA (0x02) a sub-database, F_DUPDATA (0x04) a sub-page or sub-tree of duplicates.

  pagedamage.py pages DATA.MDB
      one line per page reachable from the newest meta page: "CLASS PGNO RANGES KEYS", where
      CLASS is DB/KIND (DB a database name, "main" or "free"; KIND branch, leaf or overflow),
      "meta", or "unused" (a page of the file no tree reaches: free or never used); RANGES the
      "START-END,..." byte ranges of the page that hold something (header, pointers, nodes,
      value bytes), KEYS the hex keys of the records the page holds or leads to, comma
      separated ("-" if none).
  pagedamage.py flip DATA.MDB PGNO RANGES SEED
      flips one bit of page PGNO, at a random offset inside RANGES; prints the file offset and
      bit.
"""
import random
import struct
import sys


def u16(b, o):
    return struct.unpack_from("<H", b, o)[0]


def u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


def u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


class Env:
    def __init__(self, path):
        self.data = open(path, "rb").read()
        self.psize = u32(self.data, 16 + 24)  # FREE_DBI's md_pad in meta page 0 is the page size
        if self.psize not in (4096, 8192, 16384, 32768, 65536):
            sys.exit("pagedamage.py: no LMDB page size in '%s'" % path)
        self.npages = len(self.data) // self.psize
        metas = []
        for i in (0, 1):
            m = self.page(i)
            # meta: magic (4), version (4), address (8), mapsize (8), dbs[2] (2 x 48),
            # last_pg (8), txnid (8), all after the 16-byte page header
            base = 16
            metas.append((u64(m, base + 24 + 96 + 8), i, m))
        _, self.meta, m = max(metas)
        self.free_db = m[16 + 24:16 + 24 + 48]
        self.main_db = m[16 + 24 + 48:16 + 24 + 96]
        self.pages = {}  # pgno -> (class, ranges, keys)

    def page(self, n):
        return self.data[n * self.psize:(n + 1) * self.psize]

    def nodes(self, p):
        lower = u16(p, 12)
        n = (lower - 16) // 2
        return [u16(p, 16 + 2 * i) for i in range(max(0, min(n, self.psize // 2)))]

    def walk(self, db, root, depth=0):
        """Walks a tree from ROOT; returns the keys of its records."""
        if root == 0xFFFFFFFFFFFFFFFF or root >= self.npages or root in self.pages or depth > 16:
            return []
        p = self.page(root)
        flags = u16(p, 10)
        lower, upper = u16(p, 12), u16(p, 14)
        ranges = [(0, min(lower, self.psize)), (min(upper, self.psize), self.psize)]
        keys = []
        if flags & 0x01:
            self.pages[root] = (db + "/branch", ranges, None)
            for off in self.nodes(p):
                if off + 8 > self.psize:
                    continue
                child = u16(p, off) | u16(p, off + 2) << 16 | u16(p, off + 4) << 32
                keys += self.walk(db, child, depth + 1)
        elif flags & 0x02 and not flags & 0x20:
            self.pages[root] = (db + "/leaf", ranges, None)
            for off in self.nodes(p):
                if off + 8 > self.psize:
                    continue
                dsize = u16(p, off) | u16(p, off + 2) << 16
                nflags, ksize = u16(p, off + 4), u16(p, off + 6)
                key = p[off + 8:off + 8 + ksize]
                keys.append(key.hex())
                val = off + 8 + ksize
                if nflags & 0x01 and val + 8 <= self.psize:
                    ov = u64(p, val)
                    if ov < self.npages:
                        q = self.page(ov)
                        if u16(q, 10) & 0x04:
                            n = u32(q, 12)
                            # Only the first page of a run has a header.
                            for j in range(n):
                                end = min(self.psize, 16 + dsize - j * self.psize)
                                if ov + j < self.npages and end > 0:
                                    self.pages[ov + j] = (db + "/overflow", [(0, end)],
                                                          [key.hex()])
                elif nflags & 0x02 and db == "main" and dsize == 48:
                    sub = p[val:val + 48]
                    name = key.decode("latin-1")
                    sub_keys = self.walk(name, u64(sub, 40))
                    self.dbkeys[name] = sub_keys
        else:
            self.pages[root] = (db + "/other", [(0, self.psize)], None)
        self.pages[root] = (self.pages[root][0], self.pages[root][1], keys)
        return keys

    def classify(self):
        self.dbkeys = {}
        for i in (0, 1):
            self.pages[i] = ("meta" if i == self.meta else "meta-old", [(0, 16 + 24 + 96 + 16)],
                             [])
        self.walk("free", u64(self.free_db, 40))
        self.walk("main", u64(self.main_db, 40))
        for n in range(2, self.npages):
            if n not in self.pages:
                self.pages[n] = ("unused", [(0, self.psize)], [])


def cmd_pages(path):
    env = Env(path)
    env.classify()
    for n in sorted(env.pages):
        cls, ranges, keys = env.pages[n]
        print(cls, n, ",".join("%d-%d" % r for r in ranges if r[1] > r[0]),
              ",".join(keys) if keys else "-")


def cmd_flip(path, pgno, ranges, seed):
    env = Env(path)
    rs = [tuple(int(x) for x in r.split("-")) for r in ranges.split(",")]
    rng = random.Random(seed)
    total = sum(b - a for a, b in rs)
    at = rng.randrange(total)
    for a, b in rs:
        if at < b - a:
            off = a + at
            break
        at -= b - a
    bit = rng.randrange(8)
    fo = pgno * env.psize + off
    with open(path, "r+b") as f:
        f.seek(fo)
        c = f.read(1)[0]
        f.seek(fo)
        f.write(bytes([c ^ (1 << bit)]))
    print("page %d byte %d (file offset %d) bit %d" % (pgno, off, fo, bit))


def main(argv):
    if len(argv) == 3 and argv[1] == "pages":
        return cmd_pages(argv[2])
    if len(argv) == 6 and argv[1] == "flip":
        return cmd_flip(argv[2], int(argv[3]), argv[4], argv[5])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
