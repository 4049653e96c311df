"""Shared fixtures: the real face photos in ../shared/data (used in place, never copied into the repo)."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.requires import require

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACESIEVE_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(piece): needs an optional piece (tests/requires.py): skipped without "
                            "it, a failure where CI's FACESIEVE_REQUIRE_<PIECE>=1 is set")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture runs: a test marked requires(piece) skips, or fails under CI's flag."""
    for mark in item.iter_markers("requires"):
        require(*mark.args)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA} (set FACESIEVE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files for a person to look at (screenshots, plots)."""
    d = REPO / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d


@contextmanager
def serve_folder(root: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving `root` (for download code, without the internet):
    yields its base URL and the list of paths requested so far."""
    hits: list[str] = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
