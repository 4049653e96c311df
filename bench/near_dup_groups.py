"""Per identity, how many faces a run kept and which near-duplicate groups it formed (run by hand).

    facesieve run ../shared/data/essex_faces94_19 --out essex_clean
    python bench/near_dup_groups.py essex_clean/manifest.csv [--identity anpage] [--groups 3]

Reads only the manifest: a group is the removed faces whose `duplicate_of` names one kept face.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--identity", action="append", help="only these identities (repeatable)")
    ap.add_argument("--groups", type=int, default=3, help="largest groups shown per identity")
    args = ap.parse_args()
    m = pd.read_csv(args.manifest)
    faces = m[m["status"] == "ok"]
    dups = faces[faces["reason"].isin(["near_duplicate", "exact_duplicate"])]
    counts = faces.groupby("identity").agg(faces=("path", "size"), kept=("action", lambda a: int((a == "keep").sum())))
    counts["removed_as_duplicate"] = dups.groupby("identity").size().reindex(counts.index, fill_value=0)
    print(counts.to_string())
    print(f"total: {int(counts['faces'].sum())} faces, {int(counts['kept'].sum())} kept, "
          f"{int(counts['removed_as_duplicate'].sum())} removed as duplicates")
    for ident in args.identity or list(counts.index):
        sub = dups[dups["identity"] == ident]
        groups = sorted(sub.groupby("duplicate_of"), key=lambda g: -len(g[1]))[: args.groups]
        for kept, g in groups:
            members = ", ".join(f"{Path(p).name} {s:.3f}" for p, s in zip(g["path"], g["similarity"]))
            print(f"{ident}: {Path(kept).name} keeps {len(g)} out: {members}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
