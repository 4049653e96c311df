"""Manual decisions: a person's keep/remove for one face, stored in the workspace, applied after `decide`.

Overrides live in `<workspace>/overrides.json` ({path: "keep" | "remove"}), so they survive re-runs:
`pipeline.run` calls `apply_overrides` on every fresh manifest. The pipeline's own decisions are kept
beside them (`auto_decisions.parquet`), so the review app can re-apply a changed set of overrides
to an existing output without running any model again (`reapply`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd

from facesieve.errors import UsageError
from facesieve.workspace import Workspace, atomic_write_csv, atomic_write_text

OVERRIDES = "overrides.json"
AUTO = "auto_decisions.parquet"
ACTIONS = ("keep", "remove")
MANUAL = "manual"
FIXED_ACTIONS = ("error", "ignore")  # decided by the file itself: no hand-set keep/remove applies
_lock = threading.Lock()


def load_overrides(ws: Workspace) -> dict[str, str]:
    data = ws.read_json(OVERRIDES, default={}) or {}
    return {str(p): a for p, a in data.get("overrides", {}).items() if a in ACTIONS}


def set_overrides(ws: Workspace, changes: dict[str, str | None]) -> dict[str, str]:
    """Merge `changes` ({path: "keep" | "remove" | None}) into the stored overrides; None clears one."""
    for path, action in changes.items():
        if action is not None and action not in ACTIONS:
            raise UsageError(f"override for {path!r} must be one of {', '.join(ACTIONS)} (or cleared), not {action!r}")
    with _lock:
        current = load_overrides(ws)
        for path, action in changes.items():
            if action is None:
                current.pop(str(path), None)
            else:
                current[str(path)] = action
        ws.write_json(OVERRIDES, {"overrides": dict(sorted(current.items()))})
    return current


def apply_overrides(manifest: pd.DataFrame, ws: Workspace) -> int:
    """Record the pipeline's decisions, then set action and reason `manual` where a person said so.

    Files that could not be read (action `error`) and paths no longer in the dataset are left alone.
    Returns how many rows changed.
    """
    ws.write_table(AUTO, pd.DataFrame({
        "path": manifest["path"].astype(str).to_numpy(),
        "action": manifest["action"].astype(str).to_numpy(),
        "reason": manifest["reason"].astype(str).to_numpy(),
        "detail": manifest["detail"].fillna("").astype(str).to_numpy() if "detail" in manifest else "",
    }))
    return _overlay(manifest, load_overrides(ws))


def _overlay(manifest: pd.DataFrame, overrides: dict[str, str]) -> int:
    if not overrides:
        return 0
    wanted = manifest["path"].astype(str).map(overrides)
    rows = wanted.notna() & ~manifest["action"].isin(FIXED_ACTIONS)
    if not rows.any():
        return 0
    was = manifest.loc[rows, "action"].astype(str) + "/" + manifest.loc[rows, "reason"].astype(str)
    manifest.loc[rows, "action"] = wanted[rows]
    manifest.loc[rows, "reason"] = MANUAL
    if "detail" in manifest:
        if manifest["detail"].dtype != object:
            manifest["detail"] = manifest["detail"].astype(object)
        manifest.loc[rows, "detail"] = "set by hand; was " + was
    return int(rows.sum())


def read_manifest(out: Path) -> pd.DataFrame:
    """manifest.csv with every column as text, so writing it back changes only what was changed."""
    p = Path(out) / "manifest.csv"
    if not p.is_file():
        raise UsageError(f"{out} has no manifest.csv: is it a facesieve output?")
    return pd.read_csv(p, dtype=str, keep_default_na=False)


def pending(manifest: pd.DataFrame, overrides: dict[str, str]) -> dict[str, str]:
    """Overrides not yet in the output, and manual rows whose override was cleared ("auto")."""
    now = dict(zip(manifest["path"].astype(str), zip(manifest["action"].astype(str), manifest["reason"].astype(str))))
    out: dict[str, str] = {}
    for path, action in overrides.items():
        if path in now and now[path][0] not in FIXED_ACTIONS and (now[path] != (action, MANUAL)):
            out[path] = action
    for path, (_, reason) in now.items():
        if reason == MANUAL and path not in overrides:
            out[path] = "auto"
    return out


def reapply(out: Path, ws: Workspace, progress=None) -> dict:
    """Put the stored overrides into an existing output: files, manifest.csv and summary.json."""
    from facesieve.apply import write_output

    out = Path(out)
    manifest = read_manifest(out)
    auto = ws.read_table(AUTO)
    if auto is not None:
        base = auto.set_index("path")
        known = manifest["path"].isin(base.index)
        for col in ("action", "reason", "detail"):
            if col in manifest and col in base:
                manifest.loc[known, col] = manifest.loc[known, "path"].map(base[col]).fillna("").astype(str)
    changed = _overlay(manifest, load_overrides(ws))
    info = ws.read_json("facesieve-workspace.json", default={}) or {}
    dataset = Path(info.get("dataset", ""))
    if not dataset.is_dir():
        raise UsageError(f"the dataset this output was made from is gone: {dataset}")
    mode = (ws.read_json("applied.json", default={}) or {}).get("mode", "copy")
    relabeled = []
    if "relabeled_to" in manifest:  # --relabel copies stay while their face is not kept by hand
        m = manifest[(manifest["relabeled_to"].fillna("") != "") & (manifest["action"] != "keep")]
        relabeled = list(zip(m["path"].astype(str), m["relabeled_to"].astype(str)))
    applied = write_output(dataset, out, ws, manifest, mode, progress, extra=relabeled)
    atomic_write_csv(out / "manifest.csv", manifest)
    summary = recount(ws.read_json("summary.json", default={}) or {}, manifest)
    summary["output_files"] = applied
    ws.write_json("summary.json", summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return {"manual": changed, **applied}


def recount(summary: dict, manifest: pd.DataFrame) -> dict:
    """The summary's decision counts, from a manifest that manual changes may have altered."""
    actions = manifest["action"].value_counts()
    s = dict(summary)
    s["kept"] = int(actions.get("keep", 0))
    s["removed"] = int(actions.get("remove", 0))
    s["review"] = int(actions.get("review", 0))
    s["errors"] = int(actions.get("error", 0))
    s["ignored"] = int(actions.get("ignore", 0))
    s["by_reason"] = {f"{a}/{r}": int(n) for (a, r), n in manifest.groupby(["action", "reason"]).size().items()}
    s["manual"] = int((manifest["reason"] == MANUAL).sum())
    return s
