"""Import graph of the facesieve package (issue 18): cyclic groups of modules, counting module-level
imports only and then every import (function-level too), and the number of function-level imports.

    python bench/import_graph.py [REPO_ROOT]      (default: this checkout)

Imports made by name at run time (importlib.import_module: the quality registry's and the model
catalogue's loaders, cli.py's sub-commands) are not seen.
"""
import ast, sys, pathlib
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1]); pkg = root / "facesieve"
mods = {}
for p in pkg.rglob("*.py"):
    rel = p.relative_to(root).with_suffix("")
    name = ".".join(rel.parts)
    if name.endswith(".__init__"): name = name[:-9]
    mods[name] = p
def resolve(n):
    while n and n not in mods: n = n.rpartition(".")[0]
    return n or None
top, allg = {m: set() for m in mods}, {m: set() for m in mods}
fl = 0
for m, p in mods.items():
    tree = ast.parse(p.read_text())
    toplevel = set(id(n) for n in tree.body)
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            names = []
            if isinstance(n, ast.Import): names = [a.name for a in n.names]
            elif n.module and n.level == 0:
                names = [n.module + "." + a.name for a in n.names]
            for t in names:
                if not t.startswith("facesieve"): continue
                r = resolve(t)
                if r and r != m:
                    allg[m].add(r)
                    if id(n) in toplevel or n.col_offset == 0: top[m].add(r)
            if n.col_offset > 0: fl += 1
def sccs(g):
    idx, low, st, on, out, c = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def v(x):
        idx[x] = low[x] = c[0]; c[0] += 1; st.append(x); on.add(x)
        for y in g[x]:
            if y not in idx: v(y); low[x] = min(low[x], low[y])
            elif y in on: low[x] = min(low[x], idx[y])
        if low[x] == idx[x]:
            comp = []
            while True:
                y = st.pop(); on.discard(y); comp.append(y)
                if y == x: break
            if len(comp) > 1: out.append(sorted(comp))
    for x in g:
        if x not in idx: v(x)
    return out
for label, g in (("module-level", top), ("all imports", allg)):
    s = sccs(g)
    print(f"{label}: {len(s)} cyclic groups, {sum(map(len, s))} modules in them")
    for comp in s: print("   ", len(comp), " ".join(c.replace("facesieve.", "") for c in comp)[:600])
print("function-level (indented) facesieve+other import statements:", fl)
