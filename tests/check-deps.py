#!/usr/bin/env python3
"""check-deps.py [ROOT]: the dependency rules of design.md, checked on the sources (make check-deps).

Layers, bottom up: base/ <- keyvault/ <- store/ <- front/ <- fs/, tools/. Rules:

  layers    a file includes only headers of its own layer or of the layers below it; fs/ and
            tools/ never include each other (front/ is what they share)
  public    nothing outside store/ includes a store-internal header (every store/ header not
            in STORE_PUBLIC), nothing outside keyvault/ includes kv_internal.h; tests/ may, as
            they test the modules from inside
  chunks    only the chunk-store implementation (store/chunkstore_lmdb.c) opens or names the
            chunks database (dbi_chunks, or the name "chunks" in an LMDB call or MDB_val)
  loops     no loop of #include edges among the headers of one layer, and no call loop among
            the .c files of one layer (base/, keyvault/, store/, front/, fs/, tools/): a.c -> b.c
            when a.c calls a function b.c defines (comments and strings are left out; static
            functions count only in their own file; calls through a member, p->fn() or s.fn(),
            name no file's function)

A quoted include is resolved as the compiler does: the including file's directory, then the -I
directories of the Makefile (base, keyvault, store, front). Exit status 0 when every rule
holds, 1 with one line per violation otherwise.

Known exceptions are listed in KNOWN below, each with the branch that removes it.
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
LAYERS = ["base", "keyvault", "store", "front", "fs", "tools"]
RANK = {"base": 0, "keyvault": 1, "store": 2, "front": 3, "fs": 4, "tools": 4}
INCLUDE_PATH = ["base", "keyvault", "store", "front"]
STORE_PUBLIC = {"vault.h", "sync.h", "replica.h", "rp.h", "image.h", "ingest.h", "jobs.h", "lifecycle.h", "verify.h",
                "upgrade.h", "gc.h", "kvpin.h", "rewrap.h"}
KEYVAULT_INTERNAL = {"kv_internal.h"}
CHUNKSTORE_IMPL = {"store/chunkstore_lmdb.c"}

# Known exceptions: (rule, subject), each with the branch that removes it. None today.
KNOWN = set()


def rel(p):
    return os.path.relpath(p, ROOT)


def sources():
    out = []
    for d in LAYERS + ["tests"]:
        top = os.path.join(ROOT, d)
        for dirpath, dirnames, files in os.walk(top):
            dirnames[:] = sorted(x for x in dirnames if x not in ("corpus", "crashes", "tmp"))
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    out.append(rel(os.path.join(dirpath, f)))
    return out


def strip(text):
    """Comments and string/char literals blanked, lines kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def includes(path):
    """The files path includes with quotes, resolved; unresolved ones as 'missing:NAME'."""
    text = open(os.path.join(ROOT, path), errors="replace").read()
    res = []
    for name in INC.findall(text):
        cands = [os.path.join(os.path.dirname(path), name)] + [os.path.join(d, name) for d in INCLUDE_PATH]
        for cnd in cands:
            if os.path.isfile(os.path.join(ROOT, cnd)):
                res.append(os.path.normpath(cnd))
                break
        else:
            res.append("missing:" + name)
    return res


def layer(path):
    top = path.split(os.sep)[0]
    return top if top in RANK else None


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


DEF = re.compile(r"^(static\s+)?(?:inline\s+)?[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\([^;{]*?\)\s*\{", re.M)
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof"}


def call_loops(cfiles):
    """The call loops among cfiles: a.c -> b.c when a.c calls a function b.c defines."""
    code = {f: strip(open(os.path.join(ROOT, f), errors="replace").read()) for f in cfiles}
    owner, local = {}, {f: set() for f in cfiles}
    for f in cfiles:
        for m in DEF.finditer(code[f]):
            name = m.group(2)
            if name in KEYWORDS:
                continue
            if m.group(1):
                local[f].add(name)
            else:
                owner.setdefault(name, f)
    # A call through a member (cmd->main(...), ops.put(...)) names no function of a file.
    call = re.compile(r"(?<!->)(?<!\.)\b([A-Za-z_]\w*)\s*\(")
    g = {f: set() for f in cfiles}
    for f in cfiles:
        for name in set(call.findall(code[f])):
            if name in local[f]:
                continue
            o = owner.get(name)
            if o and o != f:
                g[f].add(o)
    return cycles(g)


def main():
    errors = []
    seen_known = set()

    def violation(rule, subject, msg):
        if (rule, subject) in KNOWN:
            seen_known.add((rule, subject))
            return
        errors.append(msg)

    files = sources()
    inc = {f: includes(f) for f in files}

    for f in files:
        lf = layer(f)
        for h in inc[f]:
            if h.startswith("missing:"):
                continue  # a header of the system or one generated; the compiler says
            lh = layer(h)
            if lf and lh:
                if RANK[lh] > RANK[lf]:
                    violation("layers", f, "%s: includes %s of a higher layer (%s above %s)" % (f, h, lh, lf))
                elif RANK[lh] == RANK[lf] and lh != lf:
                    violation("layers", f, "%s: includes %s: %s/ and %s/ never include each other (front/ is what they share)" % (f, h, lf, lh))
            if lf != "store" and lh == "store" and os.path.basename(h) not in STORE_PUBLIC and not f.startswith("tests" + os.sep):
                violation("public", f, "%s: includes %s, internal to store/ (public: %s)" % (f, h, " ".join(sorted(STORE_PUBLIC))))
            if lf != "keyvault" and os.path.basename(h) in KEYVAULT_INTERNAL and lh == "keyvault" and not f.startswith("tests" + os.sep):
                violation("public", f, "%s: includes %s, internal to keyvault/" % (f, h))

    # The chunks database: opened by name or used through its handle.
    chunk_use = re.compile(r'\bdbi_chunks\b|mdb_dbi_open\s*\([^;]*"chunks"|MDB_val\s+\w+\s*=\s*\{\s*\d+\s*,[^}]*"chunks"')
    for f in files:
        if f in CHUNKSTORE_IMPL or not f.endswith(".c"):
            continue
        raw = open(os.path.join(ROOT, f), errors="replace").read()
        code = strip(raw)
        # strings are blanked in code; look for the name in the raw text of LMDB calls, the
        # handle in the code.
        if re.search(r"\bdbi_chunks\b", code) or re.search(r'mdb_dbi_open\s*\([^;]*"chunks"', raw) or re.search(r'MDB_val\s+\w+\s*=\s*\{[^}]*"chunks"', raw):
            violation("chunks", f, "%s: opens or names the chunks database: only %s may (store/chunkstore.h)" % (f, ", ".join(sorted(CHUNKSTORE_IMPL))))

    # Include loops among the headers of one layer.
    for lay in LAYERS:
        g = {}
        for f in files:
            if layer(f) == lay and f.endswith(".h"):
                g[f] = {h for h in inc[f] if layer(h) == lay and h.endswith(".h")}
        for comp in cycles(g):
            violation("loop", " ".join(comp), "%s/: include loop among %s" % (lay, " ".join(comp)))

    # Call loops among the .c files of each layer.
    for lay in LAYERS:
        for comp in call_loops([f for f in files if layer(f) == lay and f.endswith(".c")]):
            violation("loop", " ".join(comp), "%s/: call loop among %s" % (lay, " ".join(comp)))

    for k in sorted(KNOWN - seen_known):
        print("check-deps: note: known exception %s %s no longer happens: remove it from KNOWN" % k)
    for e in errors:
        print("check-deps: " + e, file=sys.stderr)
    if errors:
        return 1
    print("dependencies ok" + (" (%d known exceptions, see KNOWN in tests/check-deps.py)" % len(seen_known) if seen_known else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
