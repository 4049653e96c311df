"""Model registry and fetching, against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest
from tests.conftest import serve_folder

from facesieve.models import fetch as fetch_mod
from facesieve.models import entry as entry_mod
from facesieve.models import registry
from facesieve.models.fetch import FetchError, fetch, resolve_weights, verify
from facesieve.models.entry import ModelEntry, sha256_matches


@pytest.fixture(scope="module")
def payload(shared_data) -> bytes:
    # A real file (an ORL face) repeated past one download chunk, so streaming is exercised.
    face = (shared_data / "orl_att40" / "s01" / "01.pgm").read_bytes()
    return face * (1 + (3 << 20) // len(face))


@pytest.fixture(scope="module")
def server(tmp_path_factory, payload):
    root = tmp_path_factory.mktemp("www")
    (root / "model.bin").write_bytes(payload)
    with serve_folder(root) as served:
        yield served


def _entry(url: str | None, sha: str | None, size: int | None = None, **kw) -> ModelEntry:
    base = dict(name="test-model", role="quality", format="onnx", filename="test_model.onnx", url=url, sha256=sha,
                size=size, licence="test", input_size=(112, 112), preprocessing="none",
                homepage="https://example.invalid/test")
    base.update(kw)
    return ModelEntry(**base)


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_registry_facts():
    yunet = registry.get("yunet-2023mar")
    assert yunet.size == 232_589 and yunet.sha256_verified
    assert yunet.sha256 == "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
    tiny = registry.get("EDIFFIQA-T")
    assert tiny.size == 7_272_678 and tiny.sha256.startswith("9426c899") and tiny.format == "onnx"
    for v in "sml":
        e = registry.get(f"ediffiqa-{v}")
        assert e.format == "pth" and e.sha256 is None and e.sha256_status.startswith("unknown")
    for name in ("arcface-r100", "adaface-ir101", "sface-fp32", "mobilefacenet"):
        assert registry.get(name).role == "embed"
    assert {e.role for e in registry.entries()} == {"detect", "embed", "quality"}
    assert all(e.url is None or e.url.startswith("https://") for e in registry.entries())
    assert len({e.filename for e in registry.entries()}) == len(registry.REGISTRY)  # no cache-name clashes
    with pytest.raises(ValueError, match="role"):
        _entry(None, None, role="segment")
    with pytest.raises(ValueError, match="hexadecimal"):
        _entry(None, "not-a-hash")
    with pytest.raises(KeyError, match="known models"):
        registry.get("nope")


def test_sha_rules():
    full = hashlib.sha256(b"x").hexdigest()
    assert sha256_matches(full, full) and sha256_matches(full, full[:8].upper())
    assert not sha256_matches(full, "0" * 8)
    with pytest.raises(ValueError, match="at least 8"):
        sha256_matches(full, full[:6])
    with pytest.raises(ValueError, match="hexadecimal"):
        entry_mod.check_sha256_text("xyz12345")
    assert _entry(None, full[:10]).sha256_status == "prefix only"
    rows = [registry.describe(e) for e in registry.entries()]
    assert {r["sha256_status"] for r in rows} >= {"pinned", "unknown (to be verified)"}


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FACESIEVE_HOME", str(tmp_path))
    assert entry_mod.cache_dir() == tmp_path / "models"
    monkeypatch.delenv("FACESIEVE_HOME")
    assert entry_mod.cache_dir() == Path.home() / ".cache" / "facesieve" / "models"


def test_fetch_success_then_cached(server, payload, tmp_path):
    base, hits = server
    sha = hashlib.sha256(payload).hexdigest()
    entry = _entry(f"{base}/model.bin", sha, len(payload))
    n0 = len(hits)
    path = fetch(entry, cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "test_model.onnx" and path.read_bytes() == payload
    assert _leftovers(tmp_path) == ["test_model.onnx", "test_model.onnx.json"]  # no .part left
    record = json.loads((tmp_path / "test_model.onnx.json").read_text())
    assert record["sha256"] == sha and record["pinned"] is True and record["size"] == len(payload)
    assert verify(path) == (True, sha)
    # Already there and verified: no second download.
    assert fetch(entry, cache_dir=tmp_path, progress=False) == path
    assert len(hits) == n0 + 1


def test_fetch_prefix_and_progress_bar(server, payload, tmp_path):
    base, _ = server
    entry = _entry(f"{base}/model.bin", hashlib.sha256(payload).hexdigest()[:8])
    assert fetch(entry, cache_dir=tmp_path, progress=True).read_bytes() == payload


def test_sha_mismatch_leaves_nothing(server, payload, tmp_path):
    base, _ = server
    entry = _entry(f"{base}/model.bin", "0" * 64)
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(entry, cache_dir=tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_size_mismatch_is_refused(server, payload, tmp_path):
    base, _ = server
    entry = _entry(f"{base}/model.bin", hashlib.sha256(payload).hexdigest(), size=len(payload) + 1)
    with pytest.raises(FetchError, match="size mismatch"):
        fetch(entry, cache_dir=tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_failed_fetch_keeps_previous_file(server, payload, tmp_path):
    """The old file is replaced only by a verified new one (temp file + os.replace)."""
    base, _ = server
    (tmp_path / "test_model.onnx").write_bytes(b"old weights")
    with pytest.raises(FetchError):
        fetch(_entry(f"{base}/model.bin", "1" * 64), cache_dir=tmp_path, progress=False)
    assert (tmp_path / "test_model.onnx").read_bytes() == b"old weights"
    assert _leftovers(tmp_path) == ["test_model.onnx"]


def test_atomic_rename(server, payload, tmp_path, monkeypatch):
    base, _ = server
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        src, dst = Path(src), Path(dst)
        calls.append((src, dst, src.stat().st_size))
        return real_replace(src, dst)

    monkeypatch.setattr(fetch_mod.os, "replace", spy)
    fetch(_entry(f"{base}/model.bin", hashlib.sha256(payload).hexdigest()), cache_dir=tmp_path, progress=False)
    (src, dst, size), = calls
    assert src.parent == dst.parent == tmp_path  # same folder: the rename is atomic
    assert src.name.endswith(".part") and dst.name == "test_model.onnx" and size == len(payload)


def test_http_404(server, tmp_path):
    base, _ = server
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(_entry(f"{base}/missing.bin", "0" * 64), cache_dir=tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_connection_refused_says_offline(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(FetchError, match="offline"):
        fetch(_entry(f"http://127.0.0.1:{port}/m.bin", "0" * 64), cache_dir=tmp_path, progress=False, timeout=5)
    assert _leftovers(tmp_path) == []


def test_mirror_used_when_first_url_fails(server, payload, tmp_path):
    base, _ = server
    entry = _entry(f"{base}/gone.bin", hashlib.sha256(payload).hexdigest(), mirrors=(f"{base}/model.bin",))
    assert fetch(entry, cache_dir=tmp_path, progress=False).read_bytes() == payload


def test_unknown_sha_needs_consent(server, payload, tmp_path):
    base, _ = server
    entry = _entry(f"{base}/model.bin", None)
    with pytest.raises(FetchError, match=r"--sha256 HEX.*--no-verify"):
        fetch(entry, cache_dir=tmp_path, progress=False)
    assert _leftovers(tmp_path) == []
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(entry, cache_dir=tmp_path, sha256="ab" * 32, progress=False)
    path = fetch(entry, cache_dir=tmp_path, no_verify=True, progress=False)
    record = json.loads((tmp_path / "test_model.onnx.json").read_text())
    assert record["pinned"] is False and record["expected"] == hashlib.sha256(payload).hexdigest()
    assert verify(path)[0]  # later corruption would now be caught
    path.write_bytes(b"corrupted")
    assert verify(path)[0] is False


def test_no_direct_url(tmp_path):
    with pytest.raises(FetchError, match="no direct download.*--weights"):
        fetch(_entry(None, "0" * 64), cache_dir=tmp_path, progress=False)
    with pytest.raises(FetchError, match="--sha256"):
        fetch("ediffiqa-m", cache_dir=tmp_path, progress=False)


def test_resolve_weights(server, payload, tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("resolve_weights must never download")

    local = tmp_path / "my_weights.pth"
    local.write_bytes(b"anything")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    # A local file is used as given, even for a model with no URL or digest.
    assert resolve_weights("arcface-r100", local) == local
    assert resolve_weights("ediffiqa-l", str(local)) == local
    with pytest.raises(FetchError, match="not found"):
        resolve_weights("ediffiqa-t", tmp_path / "absent.onnx")

    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(FetchError, match="facesieve models fetch ediffiqa-t"):
        resolve_weights("ediffiqa-t", cache_dir=cache)
    (cache / "ediffiqa_tiny_jun2024.onnx").write_bytes(b"not the model")
    with pytest.raises(FetchError, match="failed verification"):
        resolve_weights("ediffiqa-t", cache_dir=cache)

    entry = _entry(None, hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    (cache / entry.filename).write_bytes(payload)
    assert resolve_weights("test-model", cache_dir=cache) == cache / entry.filename
    assert verify("test-model", cache_dir=cache) == (True, entry.sha256)
    assert verify("yunet-2023mar", cache_dir=cache) == (False, None)
