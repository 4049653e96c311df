"""Explicit model downloads into the cache, checked by sha256, written atomically.

Only ``fetch`` touches the network, and only when called (``facesieve models fetch NAME``).
``resolve_weights`` never downloads: it returns a local file the user named, or a cached and
verified one, or tells the user which command to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from facesieve import __version__
from facesieve.digest import sha256_file
from facesieve.models.entry import (
    FetchError,
    ModelEntry,
    cache_dir as default_cache_dir,
    check_sha256_text,
    expected_sha256,
    sha256_matches,
    sidecar,
    verified_cached,
)
from facesieve.models.registry import REGISTRY, get

CHUNK = 1 << 20


def _entry(name_or_entry: ModelEntry | str) -> ModelEntry:
    if isinstance(name_or_entry, ModelEntry):
        return name_or_entry
    try:
        return get(name_or_entry)
    except KeyError as e:
        raise FetchError(str(e.args[0])) from None


def verify(target: str | Path, *, cache_dir: Path | None = None, expected: str | None = None) -> tuple[bool, str | None]:
    """Check a registry model's cached file (by name) or any file (by path) against its sha256.

    Returns (ok, actual_sha256); (False, None) when the file is absent. With no known digest
    (neither registry, nor `expected`, nor a fetch record) ok is False: the file cannot be vouched for.
    """
    if isinstance(target, str) and target.strip().lower() in REGISTRY:
        entry = REGISTRY[target.strip().lower()]
        p = entry.cached_path(cache_dir)
    else:
        p = Path(target)
        entry = next((e for e in REGISTRY.values() if e.filename == p.name), None)
    if not p.is_file():
        return False, None
    actual = sha256_file(p)
    want = expected or expected_sha256(entry, p)
    return (bool(want) and sha256_matches(actual, want)), actual


def fetch(
    name_or_entry: ModelEntry | str,
    *,
    cache_dir: Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    no_verify: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download a registry model into the cache (or return it if already there and verified).

    `url` overrides the registry's link; `sha256` (full or prefix) supplies or overrides the digest;
    `no_verify` accepts an entry without any known digest (the computed one is recorded).
    """
    entry = _entry(name_or_entry)
    want = check_sha256_text(sha256, "--sha256") if sha256 else entry.sha256
    if want is None and not no_verify:
        raise FetchError(
            f"{entry.name}: no sha256 is pinned for this model, so its download cannot be verified. "
            f"Pass --sha256 HEX if you know the digest, or --no-verify to accept the file unchecked."
        )
    urls = [url] if url else [u for u in (entry.url, *entry.mirrors) if u]
    if not urls:
        raise FetchError(
            f"{entry.name}: there is no direct download link; get the file from {entry.homepage} "
            f"and pass it with --weights PATH (or fetch it with --url URL)."
        )
    cache = Path(cache_dir or default_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / entry.filename

    if dest.is_file() and want:
        if sha256_matches(sha256_file(dest), want):
            return dest

    errors = []
    for u in urls:
        try:
            size_check = entry.size if not (sha256 or url) else None
            actual, size = _download(u, dest, want=want, expected_size=size_check,
                                     progress=progress, timeout=timeout, label=entry.name)
        except _NetworkError as e:
            errors.append(str(e))
            continue
        # With --no-verify the digest seen now becomes the reference, so later corruption is caught.
        sidecar(dest).write_text(json.dumps(
            {"name": entry.name, "url": u, "sha256": actual, "size": size, "expected": want or actual,
             "pinned": bool(want)}, indent=1))
        return dest
    offline = any("offline?" in e for e in errors)
    raise FetchError(f"{entry.name}: download failed" + (" (offline?)" if offline else "") + ": " + "; ".join(errors))


class _NetworkError(Exception):
    """Could not get the bytes from this URL (try the next mirror)."""


def _download(url: str, dest: Path, *, want: str | None, expected_size: int | None, progress: bool,
              timeout: float, label: str) -> tuple[str, int]:
    """Stream `url` to a temp file next to `dest`, check it, then rename it into place."""
    req = urllib.request.Request(url, headers={"User-Agent": f"facesieve/{__version__}"})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    got = 0
    try:
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise _NetworkError(f"HTTP {e.code} {e.reason} from {url}") from None
        except urllib.error.URLError as e:
            raise _NetworkError(f"cannot reach {url}: {e.reason} (offline?)") from None
        except (TimeoutError, socket.timeout, ConnectionError) as e:
            raise _NetworkError(f"cannot reach {url}: {e} (offline?)") from None
        with resp, os.fdopen(fd, "wb") as out:
            fd = -1
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else expected_size
            with _bar(label, total, progress) as advance:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (TimeoutError, socket.timeout, ConnectionError, OSError) as e:
                        raise _NetworkError(f"connection lost after {got} bytes from {url}: {e} (offline?)") from None
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    got += len(block)
                    advance(len(block))
        actual = h.hexdigest()
        if expected_size is not None and got != expected_size:
            raise FetchError(f"{label}: size mismatch from {url}: got {got} bytes, expected {expected_size}; "
                             "nothing was saved")
        if want and not sha256_matches(actual, want):
            raise FetchError(f"{label}: sha256 mismatch from {url}: got {actual}, expected {want}"
                             + ("" if len(want) == 64 else " (prefix)") + "; nothing was saved")
        os.replace(tmp, dest)
        return actual, got
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()


class _bar:
    """A Rich download bar (size, speed, ETA) on stderr, or a no-op."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.enabled = enabled
        self.label = label
        self.total = total
        self._progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=Console(stderr=True))
        self._progress.__enter__()
        task = self._progress.add_task(self.label, total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def resolve_weights(name: str, weights: Path | str | None = None, *, cache_dir: Path | None = None) -> Path:
    """The weights file to load for registry model `name`, without ever downloading.

    A `weights` path is used as given (it must exist). Otherwise the cached copy is used if its
    sha256 checks out; if absent or corrupt, the error names the command that fixes it.
    """
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise FetchError(f"weights file not found: {p}")
        return p
    return verified_cached(_entry(name), cache_dir)
