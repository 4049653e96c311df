"""`facesieve serve`: what it serves (only the dataset's and the report's files), whom it answers
(its own pages), manual decisions that survive re-runs, and runs started from the page."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from test_report import build_subset, page_data

from facesieve.cli import main
from facesieve.report.app import NotFound, make_server, safe_relpath


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    data = build_subset(shared_data, root)
    out = root / "out"
    assert run_cli("run", data, "--out", out, "--keep", "2", "--jobs", "2", "--quality", "image", "--quiet") == 0
    server = make_server(out, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, data, out
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, *, host: str | None = None, headers: dict | None = None, body=None,
            ctype: str = "application/json") -> tuple[int, bytes]:
    """A raw request: the path goes on the wire exactly as given (no normalisation by a client)."""
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    payload = b""
    if body is not None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.putheader("Content-Type", ctype)
    if method == "POST":
        conn.putheader("Content-Length", str(len(payload)))
    conn.endheaders(payload or None)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def origin(server) -> dict:
    return {"Origin": f"http://127.0.0.1:{server.server_address[1]}"}


TRAVERSALS = [
    "/files/..%2f..%2fetc/passwd",
    "/files/../../etc/passwd",
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/..%252f..%252fetc/passwd",
    "/files/%2fetc%2fpasswd",
    "/files//etc/passwd",
    "/files/anpage/..%2f..%2f..%2fetc%2fpasswd",
    "/files/anpage/../anpage/anpage.1.jpg",
    "/files/..%5c..%5cetc%5cpasswd",
    "/files/anpage%00.jpg",
    "/preview/..%2fout%2fmanifest.csv",
    "/report_files/..%2fmanifest.csv",
    "/report_files/../.facesieve/overrides.json",
    "/report_files/%2e%2e/.facesieve/facesieve-workspace.json",
    "/etc/passwd",
    "/..%2f..%2fetc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_not_found(served, path):
    server, _, _ = served
    status, body = request(server, "GET", path)
    assert status == 404, (path, status)
    assert b"root:" not in body and b"facesieve_workspace" not in body


def test_serves_listed_dataset_files_and_report_files_only(served):
    server, data, out = served
    status, body = request(server, "GET", "/files/anpage/anpage.1.jpg")
    assert status == 200 and body == (data / "anpage" / "anpage.1.jpg").read_bytes()
    assert request(server, "GET", "/files/anpage%2Fanpage.1.jpg")[0] == 200
    status, body = request(server, "GET", "/preview/anpage/anpage.1.jpg")
    assert status == 200 and body[:2] == b"\xff\xd8"
    # a file that is in the dataset folder but was never scanned is not the dataset's
    (data / "anpage" / "late_arrival.jpg").write_bytes((data / "anpage" / "anpage.1.jpg").read_bytes())
    try:
        assert request(server, "GET", "/files/anpage/late_arrival.jpg")[0] == 404
    finally:
        (data / "anpage" / "late_arrival.jpg").unlink()
    thumb = next((out / "report_files" / "t").rglob("*.jpg"))
    assert request(server, "GET", "/" + thumb.relative_to(out).as_posix())[0] == 200
    status, page = request(server, "GET", "/")
    assert status == 200 and b'"app":true' in page


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example:1", "localhost:1"])
def test_foreign_host_is_refused(served, host):
    server, _, _ = served
    assert request(server, "GET", "/api/data", host=host)[0] == 403
    assert request(server, "GET", "/files/anpage/anpage.1.jpg", host=host)[0] == 403


def test_foreign_origin_is_refused(served):
    server, _, out = served
    before = (out / "manifest.csv").read_bytes()
    evil = {"Origin": "http://evil.example"}
    assert request(server, "GET", "/api/data", headers=evil)[0] == 403
    body = {"path": "anpage/anpage.2.jpg", "action": "keep"}
    assert request(server, "POST", "/api/override", headers=evil, body=body)[0] == 403
    assert request(server, "POST", "/api/apply", headers=evil, body={})[0] == 403
    assert request(server, "POST", "/api/override", headers={"Origin": "null"}, body=body)[0] == 403
    port = server.server_address[1]
    assert request(server, "POST", "/api/override", headers={"Origin": f"https://127.0.0.1:{port}"}, body=body)[0] == 403
    # a form post (what a cross-site page can send without CORS) is not accepted either
    assert request(server, "POST", "/api/override", body=b"path=x&action=keep", ctype="application/x-www-form-urlencoded")[0] == 415
    assert (out / "manifest.csv").read_bytes() == before
    assert not (out / ".facesieve" / "overrides.json").exists()


def test_manual_keep_applies_and_survives_a_rerun(served, shared_data):
    server, data, out = served
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    victim = manifest[(manifest["action"] == "remove") & (manifest["reason"] == "near_duplicate")]["path"].iloc[0]
    assert not (out / victim).exists()
    data_before = digest(data)
    outside_before = sorted(p.name for p in out.parent.iterdir())

    status, body = request(server, "POST", "/api/override", headers=origin(server), body={"path": victim, "action": "keep"})
    assert status == 200 and json.loads(body)["pending"] == {victim: "keep"}
    assert not (out / victim).exists()  # stored, not yet applied
    status, body = request(server, "POST", "/api/apply", headers=origin(server), body={})
    assert status == 200, body
    res = json.loads(body)
    assert res["result"]["manual"] == 1 and res["data"]["n_pending"] == 0
    assert (out / victim).read_bytes() == (data / victim).read_bytes()
    row = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False).set_index("path").loc[victim]
    assert (row["action"], row["reason"]) == ("keep", "manual")
    assert "was remove/near_duplicate" in row["detail"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_reason"]["keep/manual"] == 1 and summary["manual"] == 1
    page = page_data((out / "report.html").read_text("utf-8"))  # the static report was rewritten too
    face = next(f for i in page["identities"] for f in i["faces"] if f[0] == victim)
    assert (page["actions"][face[1]], page["reasons"][face[2]]) == ("keep", "manual")
    # the dataset is untouched and nothing appeared beside the output
    assert digest(data) == data_before
    assert sorted(p.name for p in out.parent.iterdir()) == outside_before

    # a re-run (all cached) decides afresh and applies the override again
    assert run_cli("run", data, "--out", out, "--keep", "2", "--jobs", "1", "--quality", "image", "--quiet") == 0
    row = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False).set_index("path").loc[victim]
    assert (row["action"], row["reason"]) == ("keep", "manual")
    assert (out / victim).is_file()

    # and "auto" gives the decision back to facesieve
    assert request(server, "POST", "/api/override", headers=origin(server), body={"path": victim, "action": "auto"})[0] == 200
    assert request(server, "POST", "/api/apply", headers=origin(server), body={})[0] == 200
    row = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False).set_index("path").loc[victim]
    assert (row["action"], row["reason"]) == ("remove", "near_duplicate")
    assert not (out / victim).exists()


def test_bad_override_requests(served):
    server, _, _ = served
    h = origin(server)
    assert request(server, "POST", "/api/override", headers=h, body={"path": "nope/x.jpg", "action": "keep"})[0] == 404
    assert request(server, "POST", "/api/override", headers=h, body={"path": "anpage/anpage.1.jpg", "action": "delete"})[0] == 400
    assert request(server, "POST", "/api/override", headers=h, body={"path": "notes.txt", "action": "keep"})[0] == 400
    assert request(server, "POST", "/api/override", headers=h, body=b"{not json")[0] == 400


def test_start_a_run_from_the_app_and_follow_it(served, shared_data, tmp_path):
    server, _, first_out = served
    tiny = tmp_path / "tiny"
    for ident in ("s01", "s02"):
        shutil.copytree(shared_data / "orl_att40" / ident, tiny / ident)
    h = origin(server)
    status, body = request(server, "POST", "/api/run", headers=h, body={"dataset": str(tmp_path / "missing"), "out": str(tmp_path / "o")})
    assert status == 400 and b"not found" in body
    new_out = tmp_path / "tiny_out"
    params = {"dataset": str(tiny), "out": str(new_out), "keep": 3, "jobs": 1, "near_dup_threshold": 0.99, "quality": "image"}
    status, body = request(server, "POST", "/api/run", headers=h, body=params)
    assert status == 202, body
    seen_running = json.loads(body)["state"] == "running"
    assert request(server, "POST", "/api/run", headers=h, body=params)[0] in (409, 202)
    deadline = time.time() + 240
    while True:
        st = json.loads(request(server, "GET", "/api/run")[1])
        if st["state"] != "running":
            break
        assert time.time() < deadline, st
        time.sleep(0.3)
    assert st["state"] == "done", st
    assert seen_running
    stages = {s["name"]: s for s in st["stages"]}
    assert {"scan", "faces", "embed", "decide", "apply", "report"} <= set(stages)
    assert stages["faces"]["done"] == stages["faces"]["total"] == 20 and all(s["finished"] for s in st["stages"])
    selection = pd.read_csv(new_out / "selection.csv")
    assert set(selection["k"]) == {3}
    data = json.loads(request(server, "GET", "/api/data")[1])
    assert data["output"] == str(new_out.resolve()) and {i["name"] for i in data["identities"]} == {"s01", "s02"}
    assert (new_out / "report.html").is_file()
    server.app.open(first_out)  # back to the output the other tests use


def test_safe_relpath():
    assert safe_relpath("a/b.jpg") == "a/b.jpg"
    for bad in ("", "/etc/passwd", "a/../b", "..", "a//b", "a\\b", "a/./b", "a/", "x\x00y"):
        with pytest.raises(NotFound):
            safe_relpath(bad)


def test_serve_accepts_the_workspace_too(served):
    _, _, out = served
    server = make_server(out / ".facesieve", port=0)
    try:
        assert server.app.out == out.resolve() and server.app.ws.root == (out / ".facesieve").resolve()
        assert server.url.startswith("http://127.0.0.1:")
    finally:
        server.server_close()


def test_serve_cli_refuses_a_folder_that_is_no_output(tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    assert "manifest.csv" in capsys.readouterr().err
