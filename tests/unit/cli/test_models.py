"""`facesieve models list|fetch|verify` against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tests.conftest import serve_folder

from facesieve.cli import main


@pytest.fixture(scope="module")
def payload(shared_data) -> bytes:
    """Real bytes (an ORL face) standing in for a model file."""
    return (shared_data / "orl_att40" / "s02" / "01.pgm").read_bytes() * 40


@pytest.fixture(scope="module")
def server(tmp_path_factory, payload):
    root = tmp_path_factory.mktemp("www")
    (root / "model.onnx").write_bytes(payload)
    with serve_folder(root) as served:
        yield served


def run_json(capsys, *args: str) -> tuple[int, object]:
    rc = main(list(args) + ["--json"])
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else None)


def test_list(capsys, tmp_path):
    rc, rows = run_json(capsys, "models", "list", "--cache-dir", str(tmp_path))
    assert rc == 0
    by = {r["name"]: r for r in rows}
    for name in ("yunet-2023mar", "retinaface-mnet025", "arcface-r100", "cosface-r50", "adaface-ir101", "sface-fp32",
                 "mobilefacenet", "ediffiqa-t"):
        assert name in by
    assert by["yunet-2023mar"]["sha256_status"] == "pinned" and by["yunet-2023mar"]["cached"] is False
    assert by["arcface-r100"]["sha256_status"].startswith("unknown")
    assert all(r["licence"] for r in rows)
    rc, rows = run_json(capsys, "models", "list", "--role", "detect", "--cache-dir", str(tmp_path))
    assert {r["role"] for r in rows} == {"detect"}
    assert main(["models", "list", "--cache-dir", str(tmp_path)]) == 0  # the table
    text = capsys.readouterr().out
    assert "retinaface-mnet025" in text and "licence" in text


def test_fetch_with_sha_then_verify(capsys, server, payload, tmp_path):
    url, hits = server
    digest = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    rc, res = run_json(capsys, "models", "fetch", "arcface-r50", "--url", f"{url}/model.onnx", "--sha256", digest,
                       "--cache-dir", str(cache))
    assert rc == 0 and res["sha256"] == digest and Path(res["path"]).read_bytes() == payload
    assert Path(res["path"]).name == "ms1mv3_arcface_r50.onnx"
    n = len(hits)
    # already there and verified: no second download
    rc, _ = run_json(capsys, "models", "fetch", "arcface-r50", "--url", f"{url}/model.onnx", "--sha256", digest[:12],
                     "--cache-dir", str(cache))
    assert rc == 0 and len(hits) == n
    rc, res = run_json(capsys, "models", "verify", "--cache-dir", str(cache))
    assert rc == 0 and res["checked"] == 1 and res["models"][0]["status"] == "ok"
    # corrupt the cached file: verify says so and fails
    Path(cache / "ms1mv3_arcface_r50.onnx").write_bytes(payload[:-1] + b"X")
    rc, res = run_json(capsys, "models", "verify", "arcface-r50", "--cache-dir", str(cache))
    assert rc == 1 and res["models"][0]["status"] == "mismatch"


def test_fetch_refusals(capsys, server, payload, tmp_path):
    url, _ = server
    cache = tmp_path / "cache"
    # no pinned digest and none given: refused before downloading
    assert main(["models", "fetch", "cosface-r100", "--url", f"{url}/model.onnx", "--cache-dir", str(cache)]) == 1
    assert "--no-verify" in capsys.readouterr().err
    # a pinned model served the wrong bytes: refused, nothing kept
    assert main(["models", "fetch", "yunet-2023mar", "--url", f"{url}/model.onnx", "--cache-dir", str(cache), "-q"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not (cache / "face_detection_yunet_2023mar.onnx").exists()
    # no direct link at all
    assert main(["models", "fetch", "adaface-ir101", "--no-verify", "--cache-dir", str(cache)]) == 1
    assert "no direct download link" in capsys.readouterr().err
    assert main(["models", "fetch", "nope", "--cache-dir", str(cache)]) == 1
    assert "unknown model" in capsys.readouterr().err


def test_no_verify_records_digest(capsys, server, payload, tmp_path):
    url, _ = server
    cache = tmp_path / "cache"
    rc, res = run_json(capsys, "models", "fetch", "mobilefacenet", "--url", f"{url}/model.onnx", "--no-verify",
                       "--cache-dir", str(cache))
    assert rc == 0
    # the digest seen at fetch time is the reference from now on
    rc, res = run_json(capsys, "models", "verify", "mobilefacenet", "--cache-dir", str(cache))
    assert rc == 0 and res["models"][0]["sha256"] == hashlib.sha256(payload).hexdigest()


def test_verify_a_file_and_absent(capsys, tmp_path, payload):
    f = tmp_path / "mine.onnx"
    f.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    rc, res = run_json(capsys, "models", "verify", str(f), "--sha256", digest)
    assert rc == 0 and res["models"][0]["status"] == "ok"
    rc, res = run_json(capsys, "models", "verify", str(f))
    assert rc == 1 and res["models"][0]["status"] == "unknown digest"
    rc, res = run_json(capsys, "models", "verify", "yunet-2023mar", "--cache-dir", str(tmp_path / "empty"))
    assert rc == 1 and res["models"][0]["status"] == "absent"


def test_cached_file_is_what_a_run_name_loads(capsys, tmp_path, monkeypatch):
    """`--detector yunet-fp32` without weights loads the cached registry file, only once it verifies."""
    from facesieve.models.bundled import yunet_path
    from facesieve.models.zoo import model_identity
    from facesieve.models.zoo import build_detector

    home = tmp_path / "home"
    monkeypatch.setenv("FACESIEVE_HOME", str(home))
    (home / "models").mkdir(parents=True)
    # the int8 file under the fp32 name: not the pinned bytes, so it is refused with the fixing command
    (home / "models" / "face_detection_yunet_2023mar.onnx").write_bytes(yunet_path().read_bytes())
    with pytest.raises(Exception, match="facesieve models fetch yunet-2023mar"):
        build_detector("yunet-fp32")
    rc, res = run_json(capsys, "models", "verify", "yunet-2023mar")
    assert rc == 1 and res["models"][0]["status"] == "mismatch"
    # the same bytes given as a local file are used as given, and keyed by their own digest
    assert model_identity(f"yunet-fp32:{yunet_path()}", "detect").startswith("yunet-fp32@sha256=49f000ec")
