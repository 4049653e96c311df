"""Writing the cleaned dataset: kept files copied (or linked) into the output, never touching the input.

Each file is written to a temp name in its target folder and renamed into place. The list of files
this output holds is kept in the workspace, so a re-run removes only files facesieve itself wrote
and no longer keeps; nothing else in the output is touched.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.errors import UsageError
from facesieve.workspace import Workspace, atomic_save_npy

OUTPUT_MARKER = ".facesieve-output"
MODES = ("copy", "hardlink", "symlink")


def check_paths(dataset: Path, out: Path, workspace: Path | None = None) -> None:
    """Refuse an output or workspace inside the input (or the reverse), and a foreign non-empty output."""
    dataset = Path(dataset)
    if not dataset.exists():
        raise UsageError(f"dataset folder not found: {dataset}")
    if not dataset.is_dir():
        raise UsageError(f"dataset is not a folder: {dataset}")
    d, o = dataset.resolve(), Path(out).resolve()
    if o == d or d in o.parents:
        raise UsageError(f"refusing to write the output inside the input dataset: {out}")
    if o in d.parents:
        raise UsageError(f"refusing an output folder that contains the input dataset: {out}")
    if workspace is not None:
        w = Path(workspace).resolve()
        if w == d or d in w.parents:
            raise UsageError(f"refusing a --workspace inside the input dataset: {workspace}")
        if w in d.parents:
            raise UsageError(f"refusing a --workspace that contains the input dataset: {workspace}")
    if o.exists():
        if not o.is_dir():
            raise UsageError(f"output exists and is not a folder: {out}")
        from facesieve.lock import LOCK_NAME

        # the lock alone: a run that holds it (and is about to mark the folder) or one killed before it could
        if any(p.name != LOCK_NAME for p in o.iterdir()) and not (o / OUTPUT_MARKER).exists():
            raise UsageError(
                f"output folder {out} exists, is not empty and is not a facesieve output; "
                "choose a new folder or empty it first"
            )


def mark_output(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    marker = out / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("This folder was written by facesieve; files it lists in its workspace may be replaced on re-runs.\n")


def place(src: Path, dst: Path, mode: str) -> None:
    """Put `src` at `dst` atomically by copy, hard link or symbolic link."""
    if mode not in MODES:
        raise UsageError(f"unknown --mode {mode!r}; choose from {', '.join(MODES)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    try:
        if mode == "copy":
            shutil.copy2(src, tmp)
        elif mode == "hardlink":
            os.link(src, tmp)
        else:
            os.symlink(src.resolve(), tmp)
        os.replace(tmp, dst)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def _up_to_date(src: Path, dst: Path, mode: str) -> bool:
    if mode == "symlink":
        return dst.is_symlink() and os.readlink(dst) == str(src.resolve())
    if not dst.exists() or dst.is_symlink():
        return False
    a, b = src.stat(), dst.stat()
    if mode == "hardlink":
        return a.st_ino == b.st_ino and a.st_dev == b.st_dev
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def relabel_targets(manifest: pd.DataFrame) -> list[tuple[str, str]]:
    """(source path, output path) for each `mislabeled` face to copy into its `belongs_to`
    identity (`--relabel`), and the manifest's `relabeled_to` column filled in. A face whose photo
    is already kept under that identity (`duplicate_of` there) is not copied again."""
    manifest["relabeled_to"] = ""
    if "belongs_to" not in manifest:
        return []
    taken = set(manifest.loc[manifest["action"] == "keep", "path"].astype(str))
    pairs = []
    for i in np.flatnonzero((manifest["reason"] == "mislabeled").to_numpy() & (manifest["belongs_to"].fillna("") != "").to_numpy()):
        row = manifest.iloc[i]
        dup = str(row.get("duplicate_of") or "")
        if dup and dup.split("/")[0] == row["belongs_to"]:
            continue  # the same photo is in the output under that identity already
        name = Path(str(row["path"])).name
        dst = f"{row['belongs_to']}/{name}"
        k = 1
        while dst in taken:
            dst = f"{row['belongs_to']}/relabeled{k}_{name}"
            k += 1
        taken.add(dst)
        pairs.append((str(row["path"]), dst))
        manifest.iat[i, manifest.columns.get_loc("relabeled_to")] = dst
    return pairs


def write_output(
    dataset: Path,
    out: Path,
    ws: Workspace,
    manifest: pd.DataFrame,
    mode: str = "copy",
    progress: Callable[[int], None] | None = None,
    extra: list[tuple[str, str]] = (),
) -> dict:
    """Place every kept file (and each (source, output path) of `extra`, e.g. relabelled faces);
    remove files a previous run placed and this run no longer places."""
    mark_output(out)
    remove_temp_files(out)
    kept = manifest[manifest["action"] == "keep"]
    moves = [(str(p), str(p)) for p in kept["path"]] + list(extra)
    wanted = [dst for _, dst in moves]
    previous = set(ws.read_json("applied.json", default={}).get("files", []))
    written = skipped = 0
    # record the union first: a kill during placement must still let the next run clean up
    ws.write_json("applied.json", {"files": sorted(previous | set(wanted)), "mode": mode})
    for rel_src, rel in moves:
        src, dst = dataset / rel_src, out / rel
        if _up_to_date(src, dst, mode):
            skipped += 1
        else:
            place(src, dst, mode)
            written += 1
        if progress:
            progress(1)
    stale = previous - set(wanted)
    for rel in stale:
        p = out / rel
        if p.is_symlink() or p.is_file():
            p.unlink()
            _prune_empty_dirs(p.parent, out)
    ws.write_json("applied.json", {"files": sorted(wanted), "mode": mode})
    return {"written": written, "unchanged": skipped, "removed_stale": len(stale)}


# the temp names facesieve's atomic writes use: .<name>.<uuid4 hex>.tmp and mkstemp's .<name>.<8 chars>.tmp
_TEMP_NAME = re.compile(r"^\..+\.([0-9a-f]{32}|[a-z0-9_]{8})\.tmp$")


def remove_temp_files(out: Path) -> int:
    """Delete temp files a killed run left in the output before it could rename them into place."""
    removed = 0
    for root, _dirs, names in os.walk(out):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp") and _TEMP_NAME.match(name):
                try:
                    os.unlink(os.path.join(root, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _prune_empty_dirs(folder: Path, stop: Path) -> None:
    folder, stop = folder.resolve(), stop.resolve()
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def write_best_encodings(out: Path, encodings: dict[str, np.ndarray], ws: Workspace) -> None:
    """<out>/<identity>/best_encoding.npy: the mean vector of the kept faces, float64."""
    previous = set(ws.read_json("encodings.json", default=[]))
    for ident, vec in encodings.items():
        if ident == "":
            continue
        atomic_save_npy(out / ident / "best_encoding.npy", np.asarray(vec, dtype=np.float64))
    for ident in previous - set(encodings):
        p = out / ident / "best_encoding.npy"
        if p.exists():
            p.unlink()
            _prune_empty_dirs(p.parent, out)
    ws.write_json("encodings.json", sorted(k for k in encodings if k != ""))
