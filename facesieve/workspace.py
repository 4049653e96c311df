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


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the process's umask. mkstemp makes its
    files 0600, so an output written through one would be private where the user's other files
    (and the kept images) are not."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not Linux (or an old kernel): read it by setting it, then put it back
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temp file + rename (durable against kill -9), with the
    mode a plain write would give it (the user's umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
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

    def done_mask(self, wanted: pd.DataFrame) -> np.ndarray:
        """Boolean per row of `wanted` (columns image_id, key): True where a committed part has it.

        Vectorised (no Python object per image), so planning a million-image resume stays cheap.
        """
        done = np.zeros(len(wanted), dtype=bool)
        if not len(wanted):
            return done
        index = _pair_index(wanted)
        for t in self._tables():
            df = pd.read_parquet(t, columns=["image_id", "key"])
            done |= index.isin(_pair_index(df))
        return done

    def collect(
        self,
        wanted: pd.DataFrame,
        array_names: Iterable[str] = (),
        array_shapes: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None,
        *,
        lazy: Iterable[str] = (),
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Rows (and array rows) for `wanted` (columns image_id, key), in `wanted`'s order.

        Parts are compacted into one, written row by row (never through a memory map, whose
        touched pages would count towards this process's resident memory), so memory stays
        bounded however many images there are. Arrays come back memory-mapped, or as `NpyRows`
        (rows read on demand) for the names in `lazy`: use that for big arrays scanned once.
        """
        array_names = list(array_names)
        lazy = set(lazy)
        wanted = wanted.reset_index(drop=True)
        index = _pair_index(wanted)
        if not index.is_unique:
            raise ValueError(f"stage {self.root.name}: wanted rows repeat an (image_id, key) pair")
        tables = self._tables()
        frames = []
        sources: list[tuple[Path, np.ndarray, np.ndarray]] = []
        for t in tables:
            df = pd.read_parquet(t)
            pos = index.get_indexer(_pair_index(df)).astype(np.int64) if len(df) else np.zeros(0, np.int64)
            sel = np.flatnonzero(pos >= 0)
            # several parts may hold the same image (a crash between writes): keep the first seen
            frames.append(df.iloc[sel].assign(_pos=pos[sel]))
            sources.append((t, sel, pos[sel]))
        if frames:
            table = pd.concat(frames, ignore_index=True)
            table = table[~table["_pos"].duplicated()]
        else:
            table = pd.DataFrame({"image_id": pd.Series(dtype=object), "key": pd.Series(dtype=object), "_pos": pd.Series(dtype=np.int64)})
        missing = len(wanted) - len(table)
        if missing:
            raise RuntimeError(f"stage {self.root.name}: {missing} images have no result")
        table = table.sort_values("_pos").drop(columns="_pos").reset_index(drop=True)

        def open_array(stem: str, name: str):
            path = self.root / f"{stem}.{name}.npy"
            return NpyRows(path) if name in lazy else np.load(path, mmap_mode="r")

        if not len(wanted):  # nothing asked for: no part to write (an empty one would lack the stage's columns)
            shapes = array_shapes or {}
            return table, {n: np.zeros((0, *shapes.get(n, ((0,), np.float32))[0]), shapes.get(n, ((0,), np.float32))[1])
                           for n in array_names}

        # one part holding exactly these rows already: use its arrays as they are
        if len(tables) == 1 and self._matches(tables[0], table):
            stem = tables[0].stem
            return table, {n: open_array(stem, n) for n in array_names}

        # otherwise assemble a new compacted part, then drop the old parts
        stem = f"part-{uuid.uuid4().hex}"
        shapes = array_shapes or {}
        self.root.mkdir(parents=True, exist_ok=True)
        for name in array_names:
            arrays = [(t.with_name(f"{t.stem}.{name}.npy"), sel, pos) for t, sel, pos in sources]
            if arrays:
                first = NpyRows(arrays[0][0])
                row_shape, dtype = first.shape[1:], first.dtype
                del first
            else:
                row_shape, dtype = shapes.get(name, ((0,), np.float32))
            _write_rows(self.root / f".{stem}.{name}.tmp", self.root / f"{stem}.{name}.npy", len(wanted), tuple(row_shape),
                        np.dtype(dtype), arrays)
        atomic_write_table(self.root / f"{stem}.parquet", table)
        # a part stops existing when its table goes: tables first, then their arrays, then arrays
        # a killed run wrote without ever committing their table
        for t in tables:
            _unlink_quiet(t)
        live = {stem}
        for f in self.root.glob("part-*.npy"):
            if f.name.split(".", 1)[0] not in live:
                _unlink_quiet(f)
        return table, {n: open_array(stem, n) for n in array_names}

    @staticmethod
    def _matches(part: Path, table: pd.DataFrame) -> bool:
        df = pd.read_parquet(part, columns=["image_id", "key"])
        return len(df) == len(table) and (df["image_id"].values == table["image_id"].values).all() and (
            df["key"].values == table["key"].values
        ).all()


def _pair_index(df: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([df["image_id"].astype(str).to_numpy(), df["key"].astype(str).to_numpy()])


_COPY_ROWS = 1024  # rows moved per read while compacting


def _write_rows(tmp: Path, final: Path, n: int, row_shape: tuple[int, ...], dtype: np.dtype,
                sources: list[tuple[Path, np.ndarray, np.ndarray]]) -> None:
    """Write an (n, *row_shape) .npy at `final` (through `tmp`), row `pos[i]` taken from row
    `sel[i]` of each source .npy (opened one at a time); a row already written by an earlier
    source is kept."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n, *row_shape)}
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    filled = np.zeros(n, dtype=bool)
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            offset = f.tell()
            f.truncate(offset + n * row_bytes)  # unwritten rows read as zeros
            fd = f.fileno()
            for source, sel, pos in sources:
                reader = NpyRows(source)
                take = ~filled[pos]
                sel, pos = sel[take], pos[take]
                filled[pos] = True
                order = np.argsort(sel, kind="stable")
                sel, pos = sel[order], pos[order]
                for s in range(0, len(sel), _COPY_ROWS):
                    rows = reader[sel[s : s + _COPY_ROWS]]
                    if rows.shape[1:] != row_shape or rows.dtype != dtype:
                        raise ValueError(f"{reader.path.name}: rows {rows.shape[1:]} {rows.dtype}, expected {row_shape} {dtype}")
                    p = pos[s : s + _COPY_ROWS]
                    # runs of consecutive target rows go out in one write
                    breaks = np.flatnonzero(np.diff(p) != 1) + 1
                    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(p)]):
                        os.pwrite(fd, np.ascontiguousarray(rows[a:b]).tobytes(), offset + int(p[a]) * row_bytes)
        os.replace(tmp, final)
    except BaseException:
        _unlink_quiet(tmp)
        raise


class NpyRows:
    """Read-only rows of a .npy file, read on demand.

    Indexing (an int, a slice, an index or boolean array) returns a new in-memory ndarray.
    Unlike a memory map, reading every row once does not leave the whole file resident in this
    process (a map's touched pages count towards its RSS), so one pass over millions of crops
    runs in flat memory. `np.asarray(rows)` reads everything. Like a map, it keeps the file open,
    so it still reads the same rows after a compaction has removed the file's name.
    """

    MAX_READ = 64 << 20  # bytes per pread

    def __init__(self, path: Path | str):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"{self.path}: unsupported .npy version {version}")
            self._offset = f.tell()
        if fortran or not shape:
            raise ValueError(f"{self.path}: expected a C-ordered array with rows")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def __getstate__(self) -> dict:  # pickled (e.g. to a worker) by name: an fd does not travel
        state = self.__dict__.copy()
        state.pop("_fd", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fd = os.open(self.path, os.O_RDONLY)

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"NpyRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self._read(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        for s in range(0, len(self), _COPY_ROWS):
            yield from self._read(np.arange(s, min(s + _COPY_ROWS, len(self))))

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if not key:
                return np.asarray(self)
            head, rest = key[0], key[1:]
            rows = self[head]
            if not rest:
                return rows
            return rows[rest] if isinstance(head, (int, np.integer)) else rows[(slice(None), *rest)]
        if key is Ellipsis:
            return np.asarray(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self._read(np.array([i]))[0]
        if isinstance(key, slice):
            return self._read(np.arange(*key.indices(len(self))))
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean index of shape {idx.shape} for {len(self)} rows")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"rows must be indexed by integers or booleans, not {idx.dtype}")
        idx = np.where(idx < 0, idx + len(self), idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        return self._read(idx.reshape(-1)).reshape(*idx.shape, *self.shape[1:])

    def _read(self, idx: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(idx, return_inverse=True)
        buf = np.empty((len(unique), *self.shape[1:]), self.dtype)
        flat = buf.reshape(len(unique), -1).view(np.uint8).reshape(-1) if buf.size else None
        per_read = max(1, self.MAX_READ // max(self._row_bytes, 1))
        if len(unique) and self._row_bytes:
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1
            for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(unique)]):
                for s in range(int(a), int(b), per_read):
                    e = min(int(b), s + per_read)
                    want = (e - s) * self._row_bytes
                    data = os.pread(self._fd, want, self._offset + int(unique[s]) * self._row_bytes)
                    if len(data) != want:
                        raise OSError(f"{self.path}: file is shorter than its header says")
                    flat[s * self._row_bytes : e * self._row_bytes] = np.frombuffer(data, np.uint8)
        if len(unique) == len(idx) and (unique == idx).all():
            return buf
        return buf[inverse.reshape(-1)]


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


ProgressFn = Callable[[int], None]
