"""The workspace: stage tables (Parquet) and arrays (.npy) under one folder, written atomically.

Every write goes to a temporary file in the same folder and is renamed into place, so a run killed
at any moment leaves either the old file or the new one, never half of one. Per-image stages keep
their results in *parts* keyed by (image_id, key): a re-run, or a run resumed after a crash,
computes only the images whose key is not there yet.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MARKER = "facesieve-workspace.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temp file + rename (durable against kill -9)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(Path(tmp))
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_table(path: Path, df: pd.DataFrame) -> None:
    """Parquet through temp + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def atomic_write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def _unlink_quiet(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class Workspace:
    """One folder of stage outputs. Safe to reopen after an interrupted run."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def create(self, info: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER
        if not marker.exists():
            atomic_write_text(marker, json.dumps({"facesieve_workspace": 1, **info}, indent=2))
        self.clean_temp_files()

    def clean_temp_files(self) -> None:
        """Remove leftovers of writes that a killed run never renamed into place."""
        if not self.root.exists():
            return
        for tmp in self.root.rglob(".*.tmp"):
            _unlink_quiet(tmp)

    @staticmethod
    def is_workspace(path: Path) -> bool:
        return (Path(path) / MARKER).is_file()

    def path(self, name: str) -> Path:
        return self.root / name

    def read_table(self, name: str) -> pd.DataFrame | None:
        p = self.path(name)
        return pd.read_parquet(p) if p.exists() else None

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        atomic_write_table(self.path(name), df)

    def read_json(self, name: str, default=None):
        p = self.path(name)
        if not p.exists():
            return default
        return json.loads(p.read_text("utf-8"))

    def write_json(self, name: str, obj) -> None:
        atomic_write_text(self.path(name), json.dumps(obj, indent=2, default=str))

    def stage(self, name: str) -> StageStore:
        return StageStore(self.root / name)


class StageStore:
    """Per-image results of one stage, kept as committed parts keyed by `image_id` and `key`.

    A part is a Parquet table (one row per image, with columns image_id and key) plus optional
    arrays with one row per table row. Arrays are written first and the table last: a part
    exists only once its table exists.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def _tables(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(self.root.glob("part-*.parquet"))

    def write_part(self, table: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> None:
        if table.empty:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        stem = f"part-{uuid.uuid4().hex}"
        for name, arr in (arrays or {}).items():
            if len(arr) != len(table):
                raise ValueError(f"array {name} has {len(arr)} rows, table has {len(table)}")
            atomic_save_npy(self.root / f"{stem}.{name}.npy", np.ascontiguousarray(arr))
        atomic_write_table(self.root / f"{stem}.parquet", table)

    def done_keys(self) -> set[tuple[str, str]]:
        done: set[tuple[str, str]] = set()
        for t in self._tables():
            df = pd.read_parquet(t, columns=["image_id", "key"])
            done.update(zip(df["image_id"], df["key"]))
        return done

    def collect(
        self,
        wanted: pd.DataFrame,
        array_names: Iterable[str] = (),
        array_shapes: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None,
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Rows (and array rows) for `wanted` (columns image_id, key), in `wanted`'s order.

        Arrays are assembled into memory-mapped .npy files under the stage folder, so memory stays
        bounded however many images there are. Then the parts are compacted into one.
        """
        array_names = list(array_names)
        wanted = wanted.reset_index(drop=True)
        position = {(i, k): n for n, (i, k) in enumerate(zip(wanted["image_id"], wanted["key"]))}
        tables = self._tables()
        frames = []
        sources: list[tuple[Path, np.ndarray, np.ndarray]] = []
        for t in tables:
            df = pd.read_parquet(t)
            pos = np.array([position.get((i, k), -1) for i, k in zip(df["image_id"], df["key"])], dtype=np.int64)
            sel = np.flatnonzero(pos >= 0)
            # several parts may hold the same image (a crash between writes): keep the first seen
            frames.append(df.iloc[sel].assign(_pos=pos[sel]))
            sources.append((t, sel, pos[sel]))
        if frames:
            table = pd.concat(frames, ignore_index=True)
            first = ~table["_pos"].duplicated()
            table = table[first]
        else:
            table = pd.DataFrame({"image_id": [], "key": [], "_pos": []})
        missing = len(wanted) - len(table)
        if missing:
            raise RuntimeError(f"stage {self.root.name}: {missing} images have no result")
        table = table.sort_values("_pos").drop(columns="_pos").reset_index(drop=True)

        # one part holding exactly these rows already: use its arrays as they are
        if len(tables) == 1 and self._matches(tables[0], table):
            stem = tables[0].stem
            return table, {n: np.load(self.root / f"{stem}.{n}.npy", mmap_mode="r") for n in array_names}

        # otherwise assemble a new compacted part (arrays memory-mapped), then drop the old parts
        stem = f"part-{uuid.uuid4().hex}"
        shapes = array_shapes or {}
        for name in array_names:
            tmp = self.root / f".{stem}.{name}.tmp"
            filled = np.zeros(len(wanted), dtype=bool)
            out = None
            for t, sel, pos in sources:
                part = np.load(t.with_name(f"{t.stem}.{name}.npy"), mmap_mode="r")
                if out is None:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=part.dtype, shape=(len(wanted), *part.shape[1:]))
                take = ~filled[pos]
                if take.any():
                    out[pos[take]] = part[sel[take]]
                    filled[pos[take]] = True
            if out is None:
                shape, dtype = shapes.get(name, ((0,), np.float32))
                self.root.mkdir(parents=True, exist_ok=True)
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(wanted), *shape))
            out.flush()
            del out
            os.replace(tmp, self.root / f"{stem}.{name}.npy")
        atomic_write_table(self.root / f"{stem}.parquet", table)
        for t in tables:
            for f in self.root.glob(t.stem + ".*"):
                _unlink_quiet(f)
        return table, {n: np.load(self.root / f"{stem}.{n}.npy", mmap_mode="r") for n in array_names}

    @staticmethod
    def _matches(part: Path, table: pd.DataFrame) -> bool:
        df = pd.read_parquet(part, columns=["image_id", "key"])
        return len(df) == len(table) and (df["image_id"].values == table["image_id"].values).all() and (
            df["key"].values == table["key"].values
        ).all()


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


ProgressFn = Callable[[int], None]
