#!/usr/bin/env python3
"""Prints the top-level module graph of src/ (A -> B(n): n files of A name crate::B) and its
strongly connected components. Comments, `mod tests` blocks and single `#[cfg(test)]` items
are left out. Usage: tools/modgraph.py [A B]  (with A B: the files of A that name B)."""
import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def top_modules():
    tops = set()
    for f in os.listdir(ROOT):
        if f.endswith(".rs"):
            tops.add(f[:-3])
        elif os.path.isdir(os.path.join(ROOT, f)):
            tops.add(f)
    return tops - {"main", "lib"}


def edges(tops):
    out = collections.defaultdict(lambda: collections.defaultdict(list))
    for dp, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, ROOT).split(os.sep)
            src = rel[0][:-3] if rel[0].endswith(".rs") else rel[0]
            if src in ("main", "lib"):
                continue
            txt = re.sub(r"//[^\n]*", "", open(p).read())
            i = txt.find("#[cfg(test)]\nmod tests")
            if i >= 0:
                txt = txt[:i]
            txt = re.sub(r"#\[cfg\(test\)\]\n[^\n]*\n", "", txt)
            for m in re.finditer(r"crate::([a-z_]+)", txt):
                t = m.group(1)
                if t in tops and t != src:
                    out[src][t].append(os.path.relpath(p, ROOT))
    return out


def sccs(nodes, g):
    index, low, stack, on, res, c = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = c[0]
        c[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
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
            res.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [x for x in res if len(x) > 1]


def main():
    tops = top_modules()
    g = edges(tops)
    if len(sys.argv) == 3:
        for f in sorted(set(g[sys.argv[1]][sys.argv[2]])):
            print(f)
        return
    for s in sorted(g):
        print(s, "->", " ".join(f"{t}({len(v)})" for t, v in sorted(g[s].items())))
    print("cycles (strongly connected components):", sccs(tops, g))


main()
