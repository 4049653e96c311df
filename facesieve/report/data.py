"""The report's content as one JSON-ready dict, built from an output folder and its workspace.

The same dict feeds the static report (embedded in the page) and the review app (served as
/api/data), so both show exactly the same thing. Faces are compact arrays, not objects, so a
dataset of 1,000 identities stays a few megabytes of JSON.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from facesieve import __version__
from facesieve.overrides import MANUAL, load_overrides, pending, read_manifest
from facesieve.workspace import Workspace

ACTIONS = ["keep", "remove", "review", "error"]
IGNORE = "ignore"  # rows the scan set aside; listed under "ignored", never as an identity's face
# one face: [path, action code, reason code, quality, thumbnail key, duplicate_of, similarity,
#            outlier score, detail, override ("" | "keep" | "remove" | "auto" when pending)]
FACE_FIELDS = ["path", "action", "reason", "quality", "thumb", "dup", "sim", "outlier", "detail", "pending"]


def _num(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return round(v, 4) if math.isfinite(v) else None


def _finite(obj):
    """NaN and infinities as null: the page's JSON must parse in a browser."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame()


def collect(out: Path, ws: Workspace, thumbs: dict[str, str], *, plots: dict[str, str] | None = None,
            files_href: str = "", app: bool = False) -> dict:
    """Everything the page shows: summary, identities with their faces and groups, pairs, plots."""
    out = Path(out)
    manifest = read_manifest(out)
    summary = _finite(json.loads((out / "summary.json").read_text("utf-8"))) if (out / "summary.json").is_file() else {}
    overrides = load_overrides(ws)
    waiting = pending(manifest, overrides)

    reasons: list[str] = []
    reason_code: dict[str, int] = {}
    by_identity: dict[str, list] = {}
    where: dict[str, tuple[str, int]] = {}
    cols = {c: manifest[c].to_numpy() if c in manifest else [""] * len(manifest)
            for c in ("path", "identity", "action", "reason", "quality", "duplicate_of", "similarity", "outlier_score", "detail")}
    ignored: list[list[str]] = []
    for n in range(len(manifest)):
        path, ident, reason = cols["path"][n], cols["identity"][n], cols["reason"][n]
        if cols["action"][n] == IGNORE:  # not an image of any identity (a README): counted, not shown as a face
            ignored.append([path, reason])
            continue
        if reason not in reason_code:
            reason_code[reason] = len(reasons)
            reasons.append(reason)
        action = cols["action"][n]
        faces = by_identity.setdefault(ident, [])
        where[path] = (ident, len(faces))
        faces.append([
            path, ACTIONS.index(action) if action in ACTIONS else 3, reason_code[reason], _num(cols["quality"][n]),
            thumbs.get(path, ""), cols["duplicate_of"][n], _num(cols["similarity"][n]), _num(cols["outlier_score"][n]),
            cols["detail"][n], waiting.get(path, ""),
        ])

    groups: dict[str, list[list[int]]] = {}
    near = ws.read_table("near_groups.parquet")
    if near is not None and len(near):
        for (ident, _), g in near.groupby(["identity", "group"], sort=False):
            g = g.sort_values(["is_kept", "similarity"], ascending=[False, False])
            members = [where[p][1] for p in g["path"].astype(str) if p in where]
            if len(members) > 1:
                groups.setdefault(str(ident), []).append(members)

    selection: dict[str, dict] = {}
    for row in _read_csv(out / "selection.csv").to_dict("records"):
        selection[row["identity"]] = {"k": row.get("k", ""), "n": row.get("n_candidates", ""), "method": row.get("method", ""),
                                      "score": _num(row.get("score", ""))}

    cross = []
    for row in _read_csv(out / "cross_identity.csv").to_dict("records"):
        cross.append([row["path_a"], row["path_b"], row["identity_a"], row["identity_b"], _num(row["similarity"])])
    cross.sort(key=lambda r: -(r[4] or 0))
    overlaps = []
    for row in _read_csv(out / "identity_overlaps.csv").to_dict("records"):
        overlaps.append([row["identity_a"], row["identity_b"], row.get("n_a", ""), row.get("n_b", ""), _num(row["similarity"])])
    overlaps.sort(key=lambda r: -(r[4] or 0))

    identities = []
    for ident in sorted(by_identity, key=lambda s: (s == "", s.lower())):
        identities.append({"name": ident, "faces": by_identity[ident], "groups": groups.get(ident, []),
                           "sel": selection.get(ident)})
    return {
        "format": 1,
        "version": __version__,
        "generated": datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M"),
        "output": str(out.resolve()),
        "dataset": summary.get("dataset", ""),
        "summary": summary,
        "actions": ACTIONS,
        "reasons": reasons,
        "fields": FACE_FIELDS,
        "identities": identities,
        "cross": cross,
        "ignored": ignored,
        "overlaps": overlaps,
        "plots": plots or {},
        "files_href": files_href,
        "app": app,
        "manual": MANUAL,
        "n_pending": len(waiting),
    }
