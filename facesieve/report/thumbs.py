"""Small JPEG thumbnails for the report: the aligned 112x112 crop of each face, else the image itself.

Thumbnails are named by image id and content hash, so an unchanged file is never redrawn and a
changed one gets a new name; files no face maps to any more are removed. They live in
`<out>/report_files/t/<first hex digit>/`, next to the report that links to them.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facesieve.workspace import Workspace

SIDE = 96
QUALITY = 82
FOLDER = "report_files"
THUMBS = "t"


def thumb_key(image_id: str, sha256: str) -> str:
    return f"{image_id}-{(sha256 or '0')[:8]}"


def thumb_relpath(key: str) -> str:
    """The thumbnail's path relative to the output folder (the report's URL for it)."""
    return f"{FOLDER}/{THUMBS}/{key[:1]}/{key}.jpg"


def find_faces_stage(ws: Workspace, name: str | None = None) -> Path | None:
    """The faces stage folder to take crops from: the named one if it exists, else the latest written."""
    if name and ws.path(name).is_dir():
        return ws.path(name)
    stages = [p for p in ws.root.glob("faces-*") if p.is_dir() and any(p.glob("part-*.parquet"))]
    if not stages:
        return None
    return max(stages, key=lambda p: max(t.stat().st_mtime for t in p.glob("part-*.parquet")))


def _crop_index(stage: Path | None) -> dict[str, tuple[Path, int, str]]:
    """image_id -> (crops .npy, row, key) for every face the stage found."""
    index: dict[str, tuple[Path, int, str]] = {}
    if stage is None:
        return index
    for table in sorted(stage.glob("part-*.parquet")):
        arr = table.with_name(f"{table.stem}.crops.npy")
        if not arr.exists():
            continue
        df = pd.read_parquet(table, columns=["image_id", "key", "status"])
        for row, (iid, key, status) in enumerate(zip(df["image_id"], df["key"], df["status"])):
            if status == "ok":
                index[str(iid)] = (arr, row, str(key))
    return index


def _save_jpeg(img: Image.Image, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=QUALITY, optimize=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, dst)


def _from_image(path: Path) -> Image.Image | None:
    from facesieve.imaging import load_rgb

    try:
        rgb = load_rgb(path)
    except Exception:  # noqa: BLE001 - an unreadable file simply has no thumbnail
        return None
    img = Image.fromarray(np.ascontiguousarray(rgb))
    img.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    return img


def make_thumbnails(out: Path, dataset: Path, ws: Workspace, manifest: pd.DataFrame, faces_stage: str | None = None) -> dict[str, str]:
    """Write the thumbnails a report of `manifest` needs; returns {path: thumbnail key}.

    Files with an `error` action get none (nothing could be decoded).
    """
    out, dataset = Path(out), Path(dataset)
    crops = _crop_index(find_faces_stage(ws, faces_stage))
    open_arrays: dict[Path, np.ndarray] = {}
    keys: dict[str, str] = {}
    for path, iid, sha, action, status in zip(
        manifest["path"].astype(str), manifest["image_id"].astype(str), manifest["sha256"].astype(str),
        manifest["action"].astype(str), manifest["status"].astype(str),
    ):
        if action in ("error", "ignore"):
            continue
        key = thumb_key(iid, sha)
        dst = out / thumb_relpath(key)
        if not dst.exists():
            hit = crops.get(iid)
            img = None
            if status == "ok" and hit is not None and (not sha or hit[2].startswith(sha)):
                arr = open_arrays.get(hit[0])
                if arr is None:
                    arr = open_arrays[hit[0]] = np.load(hit[0], mmap_mode="r")
                img = Image.fromarray(np.ascontiguousarray(arr[hit[1]])).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
            else:
                img = _from_image(dataset / path)
            if img is None:
                continue
            _save_jpeg(img, dst)
        keys[path] = key
    _remove_stale(out, {thumb_relpath(k) for k in keys.values()})
    return keys


def _remove_stale(out: Path, wanted: set[str]) -> None:
    root = out / FOLDER / THUMBS
    if not root.is_dir():
        return
    for sub in root.iterdir():
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            if f.suffix == ".jpg" and f.relative_to(out).as_posix() not in wanted:
                f.unlink()
        try:
            sub.rmdir()
        except OSError:
            pass
