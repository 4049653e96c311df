"""The scan stage: every file under the dataset root, its identity, size, hash and a first verdict.

Rules (applied in this order, first match wins):
- Hidden names (starting with ".", e.g. .DS_Store, .facesieve, .git) are ignored, files and
  folders alike (a hidden folder is not entered): they are never part of a dataset and get no row.
- Only regular files get a row (FIFOs, sockets and devices are never opened). Symbolic links to
  files are followed; a link whose target is missing gets status error / broken_symlink, a link
  to itself error / symlink_loop. Linked folders are followed too, but every real folder is
  listed once (the first path in sorted order wins), which also stops link loops.
- Every path that gets no row (hidden names, folders that cannot be listed or were listed through
  another path, FIFOs/sockets/devices, empty folders) goes to the scan's `skipped` list instead,
  which the run writes to skipped.csv and counts in its summary: each path is accounted for once.
- The extension decides whether a file is meant to be an image (IMAGE_EXTENSIONS, any case). A file
  with another extension is skipped: reason unsupported_extension when its content is nevertheless an
  image (a .gif, a file with no extension) so the summary can point it out, not_an_image_extension
  otherwise (README.txt, .json, .npy). Extension first, content second: a dataset's sidecar files are
  not silently turned into training images.
- layout="folders": identity = the top-level folder (deeper folders belong to it); files directly
  under the root are skipped, reason outside_identity_folder. layout="flat": identity "" for every
  file, nested or not, and all of them are processed.
- An image-extension file is checked by content, cheaply (magic bytes, then Pillow's header parser;
  other files by magic bytes only):
  0 bytes -> error/empty_file, content of no known format -> error/not_an_image, a format Pillow
  cannot decode (HEIF, JPEG XL) -> error/unsupported_format, else ok. Pixels are NOT decoded here
  (too slow for millions of files): a truncated or damaged file is still "ok" in the scan and is
  caught by the faces stage through `imaging.load_rgb`.
- sha256 is computed for image-extension files only (chunked); other files get "" (a dataset may
  hold large archives next to its images), as do empty files and every file with hash_files=False.

Paths are POSIX, relative to the root, exactly as the file system spells them (no Unicode
normalisation, so a path always opens its file); `image_id` is derived from that string. A name that
is not valid UTF-8 cannot be stored in a table and is skipped (reason undecodable_filename), its path
shown with escapes.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath

import pandas as pd

from facesieve.errors import FacesieveError, UsageError
from facesieve.imaging import DECODABLE_FORMATS, HEAD_BYTES, IMAGE_EXTENSIONS, sniff_bytes, sniff_format

log = logging.getLogger(__name__)

LAYOUTS = ("folders", "flat")
COLUMNS = ["image_id", "path", "identity", "size", "mtime_ns", "sha256", "format", "status", "reason"]
_READ_CHUNK = 1 << 20
_PROGRESS_EVERY = 256
_BATCH = 2048
_CHUNK_FILES = 32


def make_image_id(rel_path: str | PurePath) -> str:
    """Stable id of a file: the first 16 hex digits of sha1 over its root-relative POSIX path."""
    s = rel_path.as_posix() if isinstance(rel_path, PurePath) else str(rel_path)
    return hashlib.sha1(s.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class _Item:
    rel: str  # POSIX, relative to root (for a list entry outside the root: the line as written)
    abs: str
    identity: str
    outside_identity: bool = False  # layout="folders", file directly under the root
    preset: tuple[str, str] | None = None  # (status, reason) decided without opening the file


# ------------------------------------------------------------------------------------------- walking


SKIPPED_COLUMNS = ["path", "kind", "reason"]


def iter_files(root: Path | str, skipped: list[tuple[str, str, str]] | None = None) -> Iterator[tuple[str, str]]:
    """(relative POSIX path, absolute path) of every non-hidden file below `root`, sorted by name at
    each level, regular files and broken links alike; see the module doc for links and hidden names.

    Every other path below `root` is appended to `skipped` as (path, kind, reason), so that each
    path is accounted for once: hidden names (not entered), folders that cannot be listed, folders
    already listed through a link, FIFOs/sockets/devices, and empty folders (a top-level folder
    with no file at any depth is one entry, whatever empty folders it holds)."""
    root = Path(root)
    seen: set[tuple[int, int]] = set()
    try:
        st = root.stat()
        seen.add((st.st_dev, st.st_ino))
    except OSError as e:
        raise FacesieveError(f"cannot read dataset folder {root}: {e.strerror or e}") from None
    yield from _walk(str(root), "", seen, [] if skipped is None else skipped)


def _walk(abs_dir: str, rel_dir: str, seen: set[tuple[int, int]], skipped: list) -> Iterator[tuple[str, str]]:
    try:
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        log.warning("cannot list folder %s: %s (skipped)", abs_dir, e.strerror or e)
        skipped.append((rel_dir or ".", "folder", "unreadable_folder"))
        return
    if rel_dir and not entries:
        skipped.append((rel_dir, "folder", "empty_folder"))
    for e in entries:
        rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
        if e.name.startswith("."):
            skipped.append((rel, _kind(e), "hidden"))
            continue
        try:
            if e.is_dir(follow_symlinks=True):
                st = os.stat(e.path)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    log.info("folder %s already listed through another path (link), skipped", e.path)
                    skipped.append((rel, "folder", "listed_through_another_path"))
                    continue
                seen.add(key)
                if rel_dir:
                    yield from _walk(e.path, rel, seen, skipped)
                else:  # an identity folder: one entry for it when it holds no file at all
                    mark, found = len(skipped), False
                    for item in _walk(e.path, rel, seen, skipped):
                        found = True
                        yield item
                    if not found and all(r[2] in ("hidden", "empty_folder") for r in skipped[mark:]):
                        del skipped[mark:]
                        skipped.append((rel, "folder", "empty_folder"))
            elif e.is_file(follow_symlinks=True):
                yield rel, e.path
            elif e.is_symlink() and not os.path.exists(e.path):
                yield rel, e.path  # broken link (or a link loop): recorded as an error, not silently dropped
            else:
                skipped.append((rel, "special", "not_a_regular_file"))  # FIFO, socket, device: never opened
        except OSError as err:
            if err.errno == errno.ELOOP:
                yield rel, e.path  # a link to itself: its row says so
            else:
                log.warning("cannot inspect %s: %s (skipped)", e.path, err.strerror or err)
                skipped.append((rel, "unknown", "cannot_inspect"))


def _kind(e: os.DirEntry) -> str:
    try:
        return "folder" if e.is_dir(follow_symlinks=False) else "file"
    except OSError:
        return "unknown"


def skipped_table(skipped: list[tuple[str, str, str]]) -> pd.DataFrame:
    """The paths a scan could not give a row (iter_files' `skipped`), printable, sorted."""
    rows = [(_printable(p) if not _is_utf8(p) else p, k, r) for p, k, r in skipped]
    return pd.DataFrame(sorted(rows), columns=SKIPPED_COLUMNS).astype(str)


def empty_identities(root: Path | str) -> list[str]:
    """Top-level (identity) folders that hold no non-hidden file at any depth, sorted."""
    root = Path(root)
    out = []
    try:
        with os.scandir(root) as it:
            dirs = sorted((e for e in it if not e.name.startswith(".") and e.is_dir()), key=lambda e: e.name)
    except OSError as e:
        raise FacesieveError(f"cannot read dataset folder {root}: {e.strerror or e}") from None
    root_st = root.stat()
    for d in dirs:
        if next(_walk(d.path, d.name, {(root_st.st_dev, root_st.st_ino)}, []), None) is None:
            out.append(d.name)
    return out


def check_layout(root: Path | str, layout: str) -> None:
    """Refuse (exit 2) a dataset whose images all lie directly in it while `layout` wants one
    folder per identity: every one of them would be set aside, which is never what was meant."""
    if layout != "folders":
        return
    try:
        with os.scandir(root) as it:
            entries = [e for e in it if not e.name.startswith(".")]
    except OSError as e:
        raise FacesieveError(f"cannot read dataset folder {root}: {e.strerror or e}") from None
    if any(_is_dir(e) for e in entries):
        return
    images = sum(1 for e in entries if is_image_name(e.name))
    if images:
        raise UsageError(
            f"{root} holds {images} image(s) directly in it and no identity folders; facesieve expects "
            f"DATASET/<identity>/<image>. To clean them as one group without identities, use --layout flat"
        )


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ checking


def _check(item: _Item, hash_files: bool) -> dict:
    """One row for one file. Never raises for a bad file: problems become status/reason."""
    row = {
        "image_id": make_image_id(item.rel),
        "path": item.rel,
        "identity": item.identity,
        "size": 0,
        "mtime_ns": 0,
        "sha256": "",
        "format": "",
        "status": "ok",
        "reason": "",
    }
    if item.preset is not None:
        return _set(row, *item.preset)
    image_ext = is_image_name(item.rel)

    def failed(reason: str) -> dict:  # the extension and folder rules still come first
        if not image_ext:
            return _set(row, "skipped", "not_an_image_extension")
        if item.outside_identity:
            return _set(row, "skipped", "outside_identity_folder")
        return _set(row, "error", reason)

    try:
        st = os.stat(item.abs)
    except FileNotFoundError:
        return failed("broken_symlink" if os.path.islink(item.abs) else "missing_file")
    except OSError as e:
        return failed("symlink_loop" if e.errno == errno.ELOOP else "unreadable")
    row["size"], row["mtime_ns"] = int(st.st_size), int(st.st_mtime_ns)
    if not stat.S_ISREG(st.st_mode):
        return failed("not_a_file")
    if st.st_size > 0:
        try:
            head, row["sha256"] = _read(item.abs, whole=image_ext and hash_files)
        except OSError:
            return failed("unreadable")
        # magic numbers only for other extensions: cheap, and enough to flag a misnamed image
        row["format"] = (sniff_format(item.abs, head) if image_ext else sniff_bytes(head)) or ""
    fmt = row["format"]
    if not image_ext:
        return _set(row, "skipped", "unsupported_extension" if fmt else "not_an_image_extension")
    if item.outside_identity:
        return _set(row, "skipped", "outside_identity_folder")
    if st.st_size == 0:
        return _set(row, "error", "empty_file")
    if not fmt:
        return _set(row, "error", "not_an_image")
    if fmt not in DECODABLE_FORMATS:
        return _set(row, "error", "unsupported_format")
    return row


def _set(row: dict, status: str, reason: str) -> dict:
    row["status"], row["reason"] = status, reason
    return row


def _read(path: str, whole: bool) -> tuple[bytes, str]:
    """First bytes of a file, and the sha256 of all of it when `whole` (chunked, so a huge file
    never sits in memory)."""
    with open(path, "rb", buffering=0) as f:
        if not whole:
            return f.read(HEAD_BYTES), ""
        h = hashlib.sha256()
        first = f.read(_READ_CHUNK)
        h.update(first)
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
        return first[:HEAD_BYTES], h.hexdigest()


def _run(
    items: Iterable[_Item],
    hash_files: bool,
    progress: Callable[[int], None] | None,
    threads: int,
) -> pd.DataFrame:
    """Check items in order on a few threads (reading and hashing release the GIL)."""
    rows: list[dict] = []
    pending = 0

    def tick(n: int) -> None:
        nonlocal pending
        pending += n
        if progress is not None and pending >= _PROGRESS_EVERY:
            progress(pending)
            pending = 0

    if threads <= 1:
        for it in items:
            rows.append(_check(it, hash_files))
            tick(1)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            def check_all(chunk: list[_Item]) -> list[dict]:
                return [_check(it, hash_files) for it in chunk]

            # bounded memory: a window of _BATCH files in flight, in chunks (one future per chunk)
            for batch in _batches(items, _BATCH):
                chunks = [batch[i : i + _CHUNK_FILES] for i in range(0, len(batch), _CHUNK_FILES)]
                for done in pool.map(check_all, chunks):
                    rows.extend(done)
                    tick(len(done))
    if progress is not None and pending:
        progress(pending)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.astype(
        {
            "image_id": str, "path": str, "identity": str, "size": "int64", "mtime_ns": "int64",
            "sha256": str, "format": str, "status": str, "reason": str,
        }
    )
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():  # 64-bit ids: only possible for the same path twice
        raise FacesieveError(f"image id collision between {sorted(df.loc[dup, 'path'])[:4]}")
    return df


def _batches(items: Iterable[_Item], n: int) -> Iterator[list[_Item]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def _default_threads() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def _is_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(s: str) -> str:
    return os.fsencode(s).decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------- public API


def scan(
    root: Path | str,
    *,
    layout: str = "folders",
    progress: Callable[[int], None] | None = None,
    hash_files: bool = True,
    threads: int | None = None,
    skipped: list[tuple[str, str, str]] | None = None,
) -> pd.DataFrame:
    """One row per file under `root` (columns `COLUMNS`), in sorted path order.

    `skipped`: a list that receives (path, kind, reason) for every other path (iter_files).
    `progress(n)` is called with the number of files finished since its last call (batched).
    `threads`: files checked concurrently (default: 2x cores, 2..8), since the scan waits on I/O.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"dataset folder not found: {root}" if not root.exists() else f"dataset is not a folder: {root}")

    def items() -> Iterator[_Item]:
        for rel, abs_path in iter_files(root, skipped):
            top, sep, _ = rel.partition("/")
            identity = top if (layout == "folders" and sep) else ""
            outside = layout == "folders" and not sep
            if not _is_utf8(rel):
                yield _Item(_printable(rel), abs_path, _printable(identity), outside, ("skipped", "undecodable_filename"))
            else:
                yield _Item(rel, abs_path, identity, outside)

    return _run(items(), hash_files, progress, threads or _default_threads())


def read_list_file(
    root: Path | str,
    list_file: Path | str,
    id_key_index: int,
    *,
    progress: Callable[[int], None] | None = None,
    hash_files: bool = True,
    threads: int | None = None,
) -> pd.DataFrame:
    """Like `scan`, for the files named in a list file (one path per line, relative to `root` or
    absolute inside it), identity = `Path(line).parts[id_key_index]` as SDD-FIQA's --id-key-index
    (negative counts from the end: -2 is the file's folder). Rows keep the list's order; blank
    lines and lines starting with '#' are ignored; text after a TAB is ignored (a label column);
    a path listed twice is kept once. Listed files are processed even when hidden or at the root.
    """
    root = Path(root)
    list_file = Path(list_file)
    if not root.is_dir():
        raise UsageError(f"dataset folder not found: {root}")
    try:
        text = list_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"list file not found: {list_file}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"list file {list_file} is not UTF-8 text: {e}") from None
    root_abs = os.path.abspath(root)
    parsed: list[_Item] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("\t", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        parts = Path(line).parts
        try:
            identity = parts[id_key_index]
        except IndexError:
            raise UsageError(
                f"{list_file}:{lineno}: id-key-index {id_key_index} is out of range for {line!r} "
                f"({len(parts)} path parts)"
            ) from None
        rel, abs_path, outside_root = _list_entry(line, root_abs)
        if rel in seen:
            continue
        seen.add(rel)
        preset = ("error", "outside_root") if outside_root else None
        parsed.append(_Item(rel, abs_path, identity, preset=preset))
    return _run(iter(parsed), hash_files, progress, threads or _default_threads())


def _list_entry(line: str, root_abs: str) -> tuple[str, str, bool]:
    """(row path, file to open, whether it lies outside the root) for one list line."""
    if os.path.isabs(line):
        abs_path = os.path.abspath(line)
        rel = os.path.relpath(abs_path, root_abs).replace(os.sep, "/")
    else:
        rel = posixpath.normpath(line.replace(os.sep, "/"))
        abs_path = os.path.join(root_abs, rel)
    if rel == ".." or rel.startswith("../"):
        return line, abs_path, True
    return rel, abs_path, False
