#!/usr/bin/python3
"""check_boundaries — the module boundaries of radprep's product folders, from the #include
lines of every C/C++ source and header (tests/, bench/, build trees and hidden folders are
not product code and are not read).

A module is a folder that holds .c/.cc/.cpp/.h/.hh/.hpp files; its public header is named
after the folder: `store/store.h`, for a pipeline stage `pipeline/ct/ct.h`. Rules:

  [internal]     a *_internal.h is included only from files of its own folder;
  [public-only]  from another module, a file includes only that module's public header
                 (pipeline/pipeline.h is the public header of the pipeline/ folder);
  [one-public]   every module has its public header, and every other header of the module
                 is a *_internal.h (a program's folder without any header, such as node/
                 with radprepd's main(), offers nothing to include and needs none);
  [cli-public]   cli/ (the front end that uses every module) includes nothing of another
                 module but its public header;
  [dcmtk-in-header] no header of the tree includes dcmtk, not even one that only C++
                 adapters include: dcmtk's headers are named in the *.cc adapters themselves,
                 and shared adapter headers forward-declare the few dcmtk classes they name.

Prints one line per violation, `file:line: [rule] reason` (paths relative to the root), and
exits 1 when there is any, 0 otherwise.

usage: check_boundaries.py [--root DIR]   (default: the repository this file is in)
"""
import argparse
import os
import re
import sys

SOURCE_EXT = (".c", ".cc", ".cpp", ".h", ".hh", ".hpp")
HEADER_EXT = (".h", ".hh", ".hpp")
SKIP_TOP = {"tests", "bench"}
INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.M)
BLOCK_COMMENT_RE = re.compile(r"/\*.*?\*/", re.S)
MAIN_RE = re.compile(r"^int\s+main\s*\(", re.M)


def skipped_dir(root, rel, name):
    """Folders that are not product code: tests, benchmarks, build trees, hidden ones."""
    if name.startswith("."):
        return True
    if rel == "" and name in SKIP_TOP:
        return True
    if name.startswith("build") or name == "CMakeFiles":
        return True
    return os.path.exists(os.path.join(root, rel, name, "CMakeCache.txt"))


def product_files(root):
    """Relative posix paths of every C/C++ source and header of the product folders."""
    out = []
    for dp, dns, fns in os.walk(root):
        rel = os.path.relpath(dp, root)
        rel = "" if rel == "." else rel.replace(os.sep, "/")
        dns[:] = sorted(d for d in dns if not skipped_dir(root, rel, d))
        for fn in sorted(fns):
            if fn.endswith(SOURCE_EXT) and rel:
                out.append(rel + "/" + fn)
    return out


def public_header(module):
    return "%s/%s.h" % (module, module.rsplit("/", 1)[-1])


def is_internal(path):
    return os.path.basename(path).endswith("_internal.h")


def is_program(root, path):
    """True for a source file that defines main()."""
    if path.endswith(HEADER_EXT):
        return False
    with open(os.path.join(root, path), errors="replace") as f:
        return bool(MAIN_RE.search(f.read()))


def includes(root, path):
    """[(line, '<' or '"', text)] of the #include lines of a file, comments removed
    (line numbers kept)."""
    with open(os.path.join(root, path), errors="replace") as f:
        text = f.read()
    text = BLOCK_COMMENT_RE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = re.sub(r"//[^\n]*", "", text)
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2).strip())
            for m in INCLUDE_RE.finditer(text)]


def resolve(files, modules, path, kind, inc):
    """The product file an include names, or None for a system / third-party header.
    Quoted: beside the including file first, then from the root (the tree's -I);
    <...>: from the root only when the first folder is one of the modules'."""
    cands = []
    if kind == '"':
        cands.append(os.path.normpath(os.path.join(os.path.dirname(path), inc)))
    if kind == '"' or inc.split("/", 1)[0] in {m.split("/", 1)[0] for m in modules}:
        cands.append(os.path.normpath(inc))
    for c in cands:
        c = c.replace(os.sep, "/")
        if c in files:
            return c
    return None


def check(root):
    files = product_files(root)
    fileset = set(files)
    modules = sorted({os.path.dirname(f) for f in files})
    v = []

    # [one-public]
    for m in modules:
        pub = public_header(m)
        own = [f for f in files if os.path.dirname(f) == m]
        if not any(f.endswith(HEADER_EXT) for f in own) and any(is_program(root, f) for f in own):
            continue
        if pub not in fileset:
            v.append((m + "/", 0, "one-public", "module %s/ has no public header %s" % (m, pub)))
        for f in own:
            if f.endswith(HEADER_EXT) and f != pub and not is_internal(f):
                v.append((f, 1, "one-public", "header is neither %s/'s public header %s nor a "
                          "*_internal.h" % (m, pub)))

    graph = {}  # product file -> [(line, included product file)]
    dcmtk = {}  # header -> (line, include text) of its first dcmtk include
    for f in files:
        a = os.path.dirname(f)
        graph[f] = []
        for line, kind, inc in includes(root, f):
            if inc.startswith("dcmtk/"):
                dcmtk.setdefault(f, (line, inc))
                continue
            t = resolve(fileset, modules, f, kind, inc)
            if t is None:
                continue
            graph[f].append((line, t))
            b = os.path.dirname(t)
            if b == a:
                continue
            pub = public_header(b)
            if a.split("/", 1)[0] == "cli" and t != pub:
                v.append((f, line, "cli-public", "includes %s: cli/ includes only public "
                          "headers, and %s/'s is %s" % (t, b, pub)))
            elif is_internal(t):
                v.append((f, line, "internal", "includes %s: a *_internal.h is private to "
                          "%s/" % (t, b)))
            elif t != pub:
                v.append((f, line, "public-only", "includes %s: from outside %s/ only its "
                          "public header %s may be included" % (t, b, pub)))

    # [dcmtk-in-header]: a header that includes dcmtk; say who reaches it from C, if anyone
    via = {}  # header -> (c file, line) that first reaches it
    for f in files:
        if not f.endswith(".c"):
            continue
        stack = [(t, (f, line)) for line, t in graph[f]]
        while stack:
            h, origin = stack.pop()
            if h in via or not h.endswith(HEADER_EXT):
                continue
            via[h] = origin
            stack += [(t, origin) for _, t in graph.get(h, [])]
    for h in sorted(dcmtk):
        if not h.endswith(HEADER_EXT):
            continue
        line, inc = dcmtk[h]
        who = (", and C code includes this header (%s:%d)" % via[h]) if h in via else ""
        v.append((h, line, "dcmtk-in-header", "includes %s%s: dcmtk's headers belong in the "
                  "*.cc adapters" % (inc, who)))
    return sorted(set(v))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.abspath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
    args = ap.parse_args(argv)
    violations = check(args.root)
    for f, line, rule, reason in violations:
        print("%s:%d: [%s] %s" % (f, line, rule, reason) if line else
              "%s: [%s] %s" % (f, rule, reason))
    if violations:
        print("check_boundaries: %d violation(s) in %s" % (len(violations), args.root),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
