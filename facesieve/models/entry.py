"""A downloadable model file: where it comes from, how its sha256 is checked, and where its cached
copy lives (and whether that copy checks out). The catalogue's rows (models/zoo.py) carry one each
where their weights can be fetched; models/registry.py lists them all. Nothing here downloads.

Each entry pins a sha256 where one is published (the Git LFS object id of the file in its official
repository is the sha256 of its bytes). Where only a prefix is known the prefix is stored and
checked as a prefix; where nothing is known ``sha256`` is None and ``fetch`` refuses unless the user
supplies a hash or opts out.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from facesieve.digest import sha256_file
from facesieve.errors import FacesieveError

ROLES = ("detect", "embed", "quality")
FORMATS = ("onnx", "pth")
_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 8  # shorter "hashes" would verify almost anything


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable model. ``url`` is a direct download link, or None when the publisher only
    offers a web folder (then ``homepage`` says where to get it by hand)."""

    name: str
    role: str
    format: str
    filename: str  # name in the cache dir (unique per entry, independent of the URL's name)
    url: str | None
    sha256: str | None  # full 64-hex digest, a hex prefix, or None
    size: int | None  # bytes, None when unknown
    licence: str
    input_size: tuple[int, int] | None  # (width, height); None = any size
    preprocessing: str
    homepage: str
    mirrors: tuple[str, ...] = ()
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role {self.role!r} not in {ROLES}")
        if self.format not in FORMATS:
            raise ValueError(f"{self.name}: format {self.format!r} not in {FORMATS}")
        if self.sha256 is not None:
            check_sha256_text(self.sha256, what=f"{self.name}: sha256")

    @property
    def sha256_verified(self) -> bool:
        """True only when the full digest is pinned (a prefix is weaker, None is nothing)."""
        return self.sha256 is not None and len(self.sha256) == 64

    @property
    def sha256_status(self) -> str:
        if self.sha256 is None:
            return "unknown (to be verified)"
        return "pinned" if self.sha256_verified else "prefix only"

    def cached_path(self, cache: Path | None = None) -> Path:
        """Where its fetched copy lives (`cache`, default cache_dir()), whether or not it is there."""
        return Path(cache or cache_dir()) / self.filename


def check_sha256_text(text: str, what: str = "sha256") -> str:
    """Normalise a user- or registry-given digest (full or prefix); refuse non-hex or too short."""
    t = text.strip().lower()
    if not _HEX.match(t) or len(t) > 64:
        raise ValueError(f"{what} must be hexadecimal (up to 64 digits), got {text!r}")
    if len(t) < MIN_PREFIX:
        raise ValueError(f"{what} must have at least {MIN_PREFIX} hex digits, got {len(t)}")
    return t


def sha256_matches(actual: str, expected: str) -> bool:
    """Full digests must be equal; a shorter expected digest must be a prefix of the actual one."""
    e = check_sha256_text(expected)
    return actual.lower() == e if len(e) == 64 else actual.lower().startswith(e)


def cache_dir() -> Path:
    """Where fetched models live: $FACESIEVE_HOME/models, default ~/.cache/facesieve/models."""
    home = os.environ.get("FACESIEVE_HOME")
    base = Path(home).expanduser() if home else Path("~/.cache/facesieve").expanduser()
    return base / "models"


class FetchError(FacesieveError):
    """A download or integrity check failed; the message says what to do next."""


SIDECAR_SUFFIX = ".json"  # <file>.json records the digest and source of a fetched file


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> dict:
    try:
        return json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return {}


def expected_sha256(entry: ModelEntry | None, path: Path) -> str | None:
    """The digest a file must match: the entry's, else the one recorded when it was fetched."""
    if entry is not None and entry.sha256:
        return entry.sha256
    return read_sidecar(path).get("expected") or None


def verified_cached(entry: ModelEntry, cache: Path | None = None) -> Path:
    """The entry's cached file, if it is there and its sha256 checks out; else a FetchError that
    names the command that fixes it. Never downloads."""
    p = entry.cached_path(cache)
    if not p.is_file():
        how = f"run `facesieve models fetch {entry.name}`" if entry.url else f"download it from {entry.homepage}"
        raise FetchError(f"model {entry.name} is not downloaded ({p}); {how}, or pass --weights PATH")
    want = expected_sha256(entry, p)
    actual = sha256_file(p)
    if not (want and sha256_matches(actual, want)):
        why = f"sha256 {actual} does not match {want}" if want else "no sha256 is known to check it against"
        raise FetchError(f"cached {entry.name} at {p} failed verification: {why}; "
                         f"re-run `facesieve models fetch {entry.name}` or pass --weights PATH")
    return p
