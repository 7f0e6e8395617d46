#!/usr/bin/python3
"""mutate.py: generic mutations of the named LMDB databases of a vault (tests/fuse/mutate.sh).

Knows nothing about what the records mean: it opens the environment's main database, takes
every key there that names a database as one, and mutates records as byte strings.

  mutate.py dbs VAULT
      prints the named databases, one "NAME RECORDS FLAGS" line each.
  mutate.py apply VAULT OLD SEED INDEX
      applies mutation number INDEX of the run seeded SEED to the environment in the directory
      VAULT (in place: give it a copy), OLD being an older copy of the same vault (for replays).
      Prints one line saying what was done: database, operation, key(s) in hex, details.
      Exit status 0 applied, 1 error.
  mutate.py delete VAULT DB KEYHEX,...
      deletes the records of those keys (all their values) from database DB of VAULT, in
      place; keys that are not there are ignored.

The mutations, each on one record or a pair (keys and values are random picks, reproducible
from SEED and INDEX):
  flip-key      one random bit of a key flipped (the record moves to the new key)
  flip-value    one random bit of a value flipped
  swap-values   two records of one database exchange their values
  swap-across   two records of two databases whose keys have the same length exchange values
  delete        a record deleted
  dup-near      a record copied under its own key with one byte changed
  dup-existing  a record's value copied over the value of another existing key of that database
  replay        a record's value replaced by the value of the same key in OLD (or a record of OLD
                that is gone now put back)
Mutation INDEX takes the (database, operation) pair INDEX of a list of all pairs shuffled by
SEED, so that a run of len(pairs) mutations covers every pair once; a pair that cannot apply
(an empty database, nothing to replay) falls to the next pair that can.
"""
import random
import sys

import lmdb

OPS = ["flip-key", "flip-value", "swap-values", "swap-across", "delete", "dup-near",
       "dup-existing", "replay"]

# MDB_db.md_flags bits (lmdb.h): MDB_REVERSEKEY 0x02, MDB_DUPSORT 0x04, MDB_INTEGERKEY 0x08,
# MDB_DUPFIXED 0x10, MDB_INTEGERDUP 0x20, MDB_REVERSEDUP 0x40.


def open_env(path, readonly=False):
    return lmdb.open(path, max_dbs=256, readonly=readonly, lock=not readonly, subdir=True,
                     map_size=1 << 32, create=False)


def named_dbs(env):
    """{name: handle} of every key of the main database that opens as a database."""
    out = {}
    with env.begin() as txn:
        entries = [(k, v) for k, v in txn.cursor()]
    for k, v in entries:
        if len(v) != 48:
            continue
        flags = int.from_bytes(v[4:6], "little")
        try:
            out[k] = (env.open_db(k, create=False, reverse_key=bool(flags & 0x02),
                                  dupsort=bool(flags & 0x04), integerkey=bool(flags & 0x08),
                                  dupfixed=bool(flags & 0x10), integerdup=bool(flags & 0x20)),
                      flags)
        except lmdb.Error:
            continue
    return out


def records(env, handle):
    with env.begin(db=handle) as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor()]


def hx(b, n=80):
    h = b.hex()
    return h if len(h) <= n else h[:n] + "...(%d bytes)" % len(b)


def name(db):
    return db.decode("latin-1")


def flip(b, rng):
    bit = rng.randrange(len(b) * 8)
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out), bit


def plan(op, db, dbs, cur, old, rng):
    """Returns (removes, adds, description) or None when OP cannot apply to DB.
    removes and adds are lists of (db, key, value)."""
    recs = cur[db]
    if op == "replay":
        now = dict(recs)
        cand = [(k, v) for k, v in old.get(db, []) if now.get(k) != v]
        if not cand:
            return None
        k, v = rng.choice(cand)
        if k in now:
            return ([(db, k, now[k])], [(db, k, v)],
                    "value (%d bytes) replaced by the older copy's (%d bytes)" % (len(now[k]),
                                                                                 len(v)), [k])
        return [], [(db, k, v)], "record of the older copy put back (it is gone now)", [k]
    if not recs:
        return None
    k, v = rng.choice(recs)
    if op == "flip-key":
        if not k:
            return None
        k2, bit = flip(k, rng)
        return ([(db, k, v)], [(db, k2, v)],
                "key bit %d flipped, new key %s%s" % (bit, hx(k2),
                                                      " (overwrites a record)" if
                                                      k2 in dict(recs) else ""), [k])
    if op == "flip-value":
        if not v:
            return None
        v2, bit = flip(v, rng)
        return [(db, k, v)], [(db, k, v2)], "value bit %d of %d flipped" % (bit, len(v) * 8), [k]
    if op == "delete":
        return [(db, k, v)], [], "record deleted (value %d bytes)" % len(v), [k]
    if op == "swap-values":
        cand = [(k2, v2) for k2, v2 in recs if v2 != v]
        if not cand:
            return None
        k2, v2 = rng.choice(cand)
        return ([(db, k, v), (db, k2, v2)], [(db, k, v2), (db, k2, v)],
                "values swapped with key %s" % hx(k2), [k])
    if op == "swap-across":
        cand = [(d2, k2, v2) for d2 in sorted(cur) if d2 != db
                for k2, v2 in cur[d2] if len(k2) == len(k) and v2 != v]
        if not cand:
            return None
        d2, k2, v2 = rng.choice(cand)
        return ([(db, k, v), (d2, k2, v2)], [(db, k, v2), (d2, k2, v)],
                "value swapped with %s key %s" % (name(d2), hx(k2)), [k])
    if op == "dup-near":
        if not k:
            return None
        i = rng.randrange(len(k))
        k2 = bytearray(k)
        k2[i] = (k2[i] + rng.randrange(1, 256)) % 256
        k2 = bytes(k2)
        return ([], [(db, k2, v)],
                "record copied to key %s (byte %d changed)%s" % (hx(k2), i,
                                                                " (overwrites a record)" if
                                                                k2 in dict(recs) else ""), [k])
    if op == "dup-existing":
        cand = [(k2, v2) for k2, v2 in recs if k2 != k and v2 != v]
        if not cand:
            return None
        k2, v2 = rng.choice(cand)
        return [(db, k2, v2)], [(db, k2, v)], "value copied over key %s" % hx(k2), [k]
    raise ValueError(op)


def cmd_dbs(path):
    env = open_env(path, readonly=True)
    for db, (h, flags) in sorted(named_dbs(env).items()):
        print(name(db), len(records(env, h)), "0x%x" % flags)
    return 0


def cmd_apply(path, oldpath, seed, index):
    env = open_env(path)
    dbs = named_dbs(env)
    if not dbs:
        print("no named databases in '%s'" % path, file=sys.stderr)
        return 1
    cur = {db: records(env, h) for db, (h, _) in dbs.items()}
    oenv = open_env(oldpath, readonly=True)
    odbs = named_dbs(oenv)
    old = {db: records(oenv, h) for db, (h, _) in odbs.items()}
    oenv.close()

    pairs = [(db, op) for db in sorted(dbs) for op in OPS]
    random.Random("%s pairs" % seed).shuffle(pairs)
    rng = random.Random("%s %d" % (seed, index))
    # A pair that cannot apply falls to random others (not always the next one).
    order = [pairs[index % len(pairs)]] + rng.sample(pairs, len(pairs))
    for db, op in order:
        p = plan(op, db, dbs, cur, old, rng)
        if p is None:
            continue
        removes, adds, what, keys = p
        with env.begin(write=True) as txn:
            for d, k, v in removes:
                h, flags = dbs[d]
                if not txn.delete(k, v if flags & 0x04 else b"", db=h):
                    raise RuntimeError("cannot delete %s %s" % (name(d), hx(k)))
            for d, k, v in adds:
                h, _ = dbs[d]
                txn.put(k, v, db=h)
        env.sync(True)
        env.close()
        print("db %s, %s, key %s: %s" % (name(db), op, hx(keys[0]), what))
        return 0
    print("no mutation applies to '%s'" % path, file=sys.stderr)
    return 1


def cmd_delete(path, db, keys):
    env = open_env(path)
    h, _ = named_dbs(env)[db.encode("latin-1")]
    n = 0
    with env.begin(write=True, db=h) as txn:
        for k in keys.split(","):
            if k and k != "-" and txn.delete(bytes.fromhex(k)):
                n += 1
    env.sync(True)
    env.close()
    print("%d records deleted from %s" % (n, db))
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "dbs":
        return cmd_dbs(argv[2])
    if len(argv) == 6 and argv[1] == "apply":
        return cmd_apply(argv[2], argv[3], argv[4], int(argv[5]))
    if len(argv) == 5 and argv[1] == "delete":
        return cmd_delete(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
