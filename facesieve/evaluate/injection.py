"""Measure the duplicate passes: inject near-copies of real photos into a dataset, run, and count.

A copy is *found* when it and its source end up as one decision (one removed as a duplicate of
the other, or both duplicates of the same kept face). Precision is over every face removed as a
duplicate: right when the removed face and the face it duplicates come from the same photo.
Originals lost counts distinct photos removed as duplicates of a different photo.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facesieve.augment import COPY_KINDS, WEB_COPY_KINDS, jpeg_bytes, near_copy, web_bytes, web_copy
from facesieve.imaging import load_rgb

DUP_REASONS = ("near_duplicate", "near_identical_shot", "exact_duplicate")


def set_sources(data: Path, sets: list[str]) -> list[tuple[Path, str]]:
    """(file, identity) for every image in the identity folders of each named set under `data`;
    identities are prefixed with their set ("orl_att40__s01") so that sets never share a name."""
    out = []
    for s in sets:
        for p in sorted((data / s).rglob("*")):
            if p.is_file() and p.suffix.lower() in (".jpg", ".pgm", ".png") and p.parent != data / s:
                out.append((p, f"{s}__{p.parent.name}"))
    return out


def build_injected(sources: list[tuple[Path, str]], dst: Path, n_copies: int, seed: int = 0, web: bool = False) -> pd.DataFrame:
    """Copy `sources` ((file, identity) pairs) into dst/<identity>/, then add `n_copies` near-copies
    of randomly chosen sources, cycling through every copy kind. Returns the injected copies:
    columns path, source (both relative to dst), kind. `web`: the kinds of the duplicates issue at
    their full range, saved as the web saves them (augment.web_copy / web_bytes), instead of the
    six lossless early kinds."""
    rng = np.random.default_rng(seed)
    rels = []
    for src, ident in sources:
        rel = f"{ident}/{src.name}"
        (dst / ident).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst / rel)
        rels.append(rel)
    kinds = list(WEB_COPY_KINDS if web else COPY_KINDS)
    picks = rng.choice(len(rels), size=min(n_copies, len(rels)), replace=False)
    rows = []
    for n, i in enumerate(picks):
        kind = kinds[n % len(kinds)]
        rel = rels[i]
        rgb = load_rgb(dst / rel)
        stem = Path(rel).stem
        ident = rel.split("/", 1)[0]
        if web:
            data, suffix = web_bytes(web_copy(rgb, kind, rng)[0], kind, rng)
            out = f"{ident}/copy_{kind}_{stem}{suffix}"
            (dst / out).write_bytes(data)
        elif kind == "jpeg":
            out = f"{ident}/copy_{kind}_{stem}.jpg"
            (dst / out).write_bytes(jpeg_bytes(rgb, int(rng.integers(30, 91))))
        else:
            out = f"{ident}/copy_{kind}_{stem}.png"
            Image.fromarray(near_copy(rgb, kind, rng)).save(dst / out)
        rows.append((out, rel, kind))
    return pd.DataFrame(rows, columns=["path", "source", "kind"])


def kept_face(manifest: pd.DataFrame) -> dict[str, str]:
    """Each path's group: the face its chain of duplicate removals ends at (itself where it was not
    removed as a duplicate). A chain, not one step: the exact-duplicate pass runs first, so an exact
    copy can name a face that the near-duplicate pass removed later for a third one."""
    named = manifest["duplicate_of"].astype(object).where(manifest["reason"].isin(DUP_REASONS))
    to = {p: d for p, d in zip(manifest["path"], named) if isinstance(d, str) and d}

    def end(p: str) -> str:
        seen = {p}
        while p in to and to[p] not in seen:
            p = to[p]
            seen.add(p)
        return p

    return {p: end(p) for p in manifest["path"]}


def score_injection(manifest: pd.DataFrame, injected: pd.DataFrame) -> dict:
    """Recall per kind, precision of duplicate removals, originals lost (see module docstring).
    Found follows the chain of removals (kept_face); precision and originals lost judge each
    removal by the face it names."""
    source = dict(zip(injected["path"], injected["source"]))

    def photo(p: str) -> str:
        return source.get(p, p)

    m = manifest.set_index("path")
    dup = m[m["reason"].isin(DUP_REASONS)]
    kept_of = {p: (d if isinstance(d, str) and d else p) for p, d in zip(m.index, m["duplicate_of"].astype(object).fillna(""))}
    right = [photo(p) == photo(kept_of[p]) for p in dup.index]
    group = kept_face(manifest)
    found = []
    for c, s in zip(injected["path"], injected["source"]):
        found.append(c in group and s in group and group[c] == group[s])
    injected = injected.assign(found=found)
    originals = [p for p in m.index if p not in source and m.loc[p, "status"] == "ok"]
    lost = [p for p in originals if p in dup.index and photo(kept_of[p]) != p]
    return {
        "copies": int(len(injected)),
        "found": int(np.sum(found)),
        "recall": float(np.mean(found)) if len(found) else float("nan"),
        "recall_by_kind": injected.groupby("kind")["found"].mean().round(3).to_dict(),
        "removed_as_duplicate": int(len(dup)),
        "precision": float(np.mean(right)) if right else 1.0,
        "originals": len(originals),
        "originals_lost": len(lost),
        "originals_lost_share": len(lost) / max(len(originals), 1),
        "lost": lost,
    }
