"""facesieve's import graph: imports inside functions vs at module level, and the import cycles.

Cycles are strongly connected groups of the graph with every import (function-level ones too, the
hidden cycles), per module and per package (facesieve/<pkg>/ as one node). Also lists the edges
from report/ to pipeline, preparation or serve (report/ should import none: it is a leaf).

    python tools/import_graph.py            # this checkout
    python tools/import_graph.py --root DIR # another checkout (e.g. a `git archive` of main)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted((root / "facesieve").rglob("*.py")):
        name = ".".join(p.relative_to(root).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def graph(mods: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]], int, int]:
    """(module-level edges, all edges, imports inside functions, imports at module level)."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    top: dict[str, set[str]] = {m: set() for m in mods}
    every: dict[str, set[str]] = {m: set() for m in mods}
    inner = outer = 0
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        at_top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            is_top = id(node) in at_top
            inner, outer = inner + (not is_top), outer + is_top
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = pkg + ("." + base if base else "")
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                r = resolve(t) if t.startswith("facesieve") else None
                if r and r != m:
                    every[m].add(r)
                    if is_top:
                        top[m].add(r)
    return top, every, inner, outer


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("."), help="checkout holding facesieve/ (default: .)")
    args = ap.parse_args(argv)
    mods = modules(args.root)
    top, every, inner, outer = graph(mods)
    print(f"imports inside functions: {inner}, at module level: {outer}")
    short = lambda names: " ".join(n.removeprefix("facesieve.") for n in names)  # noqa: E731
    for label, g in (("module-level imports", top), ("all imports", every)):
        groups = cycles(g)
        print(f"cycles, modules, {label}: {len(groups)}")
        for c in groups:
            print("   ", short(c))

    def package(m: str) -> str:
        parts = m.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 and (args.root / "facesieve" / parts[1]).is_dir() else m

    pg: dict[str, set[str]] = {}
    for m, ts in every.items():
        pg.setdefault(package(m), set()).update(package(t) for t in ts if package(t) != package(m))
    for ts in list(pg.values()):
        for t in ts:
            pg.setdefault(t, set())
    groups = cycles(pg)
    print(f"cycles, packages, all imports: {len(groups)}")
    for c in groups:
        print("   ", short(c))
    leaf = sorted((m, t) for m in every if m.startswith("facesieve.report") for t in every[m]
                  if t.startswith(("facesieve.pipeline", "facesieve.preparation", "facesieve.serve")))
    print(f"report/ -> pipeline, preparation or serve: {len(leaf)}" + "".join(f"\n    {a} -> {b}" for a, b in leaf))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
