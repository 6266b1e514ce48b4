#!/usr/bin/env python3
"""Lists import loops between the source files of each crate (issue 17's check).

A file's imports are the modules its `crate::…` and `super::…` paths name (in `use` lines
and in code) and the child modules it names by a relative path (`child::item`), with names the crate root re-exports (`pub use module::Name`) traced to the
module that defines them. `mod` declarations are not imports. Prints each loop found and
exits 1 if there is one.
"""
import os, re, sys

def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("lib", "main"):
        rel = rel[:-1]
    elif rel[-1] == "mod":
        rel = rel[:-1]
    return tuple(rel)

def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    # Test modules import their parent by design (`use super::*`).
    cut = text.find("#[cfg(test)]\nmod tests")
    return text if cut < 0 else text[:cut]

def expand_use(body):
    """`a::{b, c::{d}}` -> ['a::b', 'a::c::d']"""
    body = body.strip()
    m = re.match(r"^([\w:]*?)\{(.*)\}$", body, re.S)
    if not m:
        return [body]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{": depth += 1
        if ch == "}": depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur); cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out += [prefix + q for q in expand_use(p)]
    return out

def check(crate):
    src = os.path.join(crate, "src")
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(src, p)] = strip(open(p).read())
    modules = set(files)
    # Names re-exported by each module (`pub use x::Name`), to trace `crate::Name`.
    reexports = {}
    for mod, text in files.items():
        for body in re.findall(r"pub(?:\(crate\))? use ([^;]+);", text):
            for path in expand_use(body):
                segs = [s for s in path.split(" as ")[0].split("::") if s]
                if segs and segs[0] in ("crate", "self", "super"):
                    base = list(mod) if segs[0] != "crate" else []
                    if segs[0] == "super": base = list(mod[:-1])
                    segs = segs[1:]
                else:
                    base = list(mod)
                target = tuple(base + segs[:-1])
                if target in modules:
                    reexports[(mod, segs[-1])] = target
    def resolve(mod, segs):
        # Longest prefix that names a module; a trailing name may be a re-export.
        best = None
        for i in range(len(segs), 0, -1):
            cand = tuple(segs[:i])
            if cand in modules:
                best = cand; rest = segs[i:]; break
        if best is None:
            return None
        if rest and (best, rest[0]) in reexports:
            return reexports[(best, rest[0])]
        return best
    edges = {m: set() for m in modules}
    for mod, text in files.items():
        paths = []
        for body in re.findall(r"\buse ([^;]+);", text):
            paths += expand_use(body)
        paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", text)
        # A child module named by a relative path (`child::item`, `use child::Item`).
        for child in set(re.findall(r"(?<![\w:])(\w+)::", text)):
            if mod + (child,) in modules:
                edges[mod].add(mod + (child,))
        for path in paths:
            segs = [s.strip() for s in path.split(" as ")[0].split("::") if s.strip()]
            if not segs or segs[0] not in ("crate", "super"):
                continue
            base = [] if segs[0] == "crate" else list(mod[:-1])
            while len(segs) > 1 and segs[1] == "super":
                base = base[:-1]; segs = segs[1:]
            target = resolve(mod, base + segs[1:])
            if target is not None and target != mod and target != ():
                edges[mod].add(target)
    # Cycles: strongly connected components of more than one file.
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                out.append(comp)
    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            visit(v)
    return out

found = False
for crate in sorted(sys.argv[1:]):
    for comp in check(crate):
        found = True
        print(f"{crate}: " + " <-> ".join("::".join(m) or "lib" for m in sorted(comp)))
print("import loops found" if found else "no import loops")
sys.exit(1 if found else 0)
