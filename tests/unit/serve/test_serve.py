"""`facesieve serve`: what it serves (only the dataset's and the report's files), whom it answers
(its own pages), manual decisions that survive re-runs, and runs started from the page."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from tests.unit.report.test_report import build_subset, page_data

from facesieve.cli import main
from facesieve.serve.app import NotFound, make_server, safe_relpath


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    data = build_subset(shared_data, root)
    plant_hostile_files(shared_data, data, root)
    out = root / "out"
    assert run_cli("run", data, "--out", out, "--keep", "2", "--jobs", "2", "--quality", "image", "--quiet") == 0
    server = make_server(out, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, data, out
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, **kw) -> tuple[int, bytes]:
    status, _, data = exchange(server, method, path, **kw)
    return status, data


def exchange(server, method: str, path: str, *, host: str | None = None, headers: dict | None = None, body=None,
             ctype: str = "application/json"):
    """A raw request: the path goes on the wire exactly as given (no normalisation by a client);
    returns (status, headers, body)."""
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
    return r.status, r.headers, data


def origin(server) -> dict:
    """What the app's own page sends with a POST: its origin and the session token."""
    return {"Origin": f"http://127.0.0.1:{server.server_address[1]}", "X-Facesieve-Token": server.app.token}


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
    assert request(server, "POST", "/api/override", body=b"path=x&action=keep", ctype="application/x-www-form-urlencoded")[0] == 403
    tok = {"X-Facesieve-Token": server.app.token}
    assert request(server, "POST", "/api/override", headers=tok, body=b"path=x&action=keep", ctype="application/x-www-form-urlencoded")[0] == 415
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


# ---------------------------------------------------------------- hostile datasets and hostile clients (issue 20)

# What a dataset's own files try when a browser runs them at the app's origin: write an override
# through the API, leave a global and a title, and ask for /pwned (a request a browser test can see).
HOSTILE_TARGET = "anpage/anpage.1.jpg"
HOSTILE_SCRIPT = ('window.pwned=1;document.title="pwned";new Image().src="/pwned";'
                  'fetch("/api/override",{method:"POST",headers:{"Content-Type":"application/json"},'
                  f'body:JSON.stringify({{path:"{HOSTILE_TARGET}",action:"remove"}})}});')
HOSTILE_FILES = ("anpage/notes.html", "anpage/evil.svg", "anpage/fake.jpg")


def plant_hostile_files(shared: Path, data: Path, root: Path) -> None:
    """Files a hostile dataset may hold: a page and an SVG with script, HTML named .jpg, a real JPEG
    with a page appended (it decodes), and a link to an image outside the dataset."""
    (data / "anpage" / "notes.html").write_text(f"<!doctype html><h1>notes</h1><script>{HOSTILE_SCRIPT}</script>")
    (data / "anpage" / "evil.svg").write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><script><![CDATA[{HOSTILE_SCRIPT}]]></script></svg>')
    (data / "anpage" / "fake.jpg").write_text(f"<html><script>{HOSTILE_SCRIPT}</script></html>")
    jpeg = (shared / "essex_faces94_19" / "asamma" / "asamma.5.jpg").read_bytes()
    (data / "asamma" / "polyglot.jpg").write_bytes(jpeg + f"<html><script>{HOSTILE_SCRIPT}</script></html>".encode())
    (root / "outside").mkdir()
    shutil.copy2(shared / "essex_faces94_19" / "asewil" / "asewil.1.jpg", root / "outside" / "secret.jpg")
    (data / "anpage" / "link_out.jpg").symlink_to(root / "outside" / "secret.jpg")


def overrides_of(out: Path) -> dict:
    from facesieve.overrides import load_overrides
    from facesieve.workspace import Workspace

    return load_overrides(Workspace(out / ".facesieve"))


def listed(out: Path) -> set[str]:
    return set(pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)["path"])


def raw_exchange(server, data: bytes, timeout: float = 10) -> bytes:
    """Bytes on the wire, all the server answers until it closes (or `timeout` of silence)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=timeout) as s:
        s.sendall(data)
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1."), reply[:80]
    return int(reply.split(b" ", 2)[1])


def no_exception_text(body: bytes) -> bool:
    return not re.search(rb"Error|Exception|Traceback|line \d|\.py", body)


@pytest.mark.parametrize("rel", HOSTILE_FILES)
def test_listed_files_that_are_no_images_are_not_served(served, rel):
    server, data, out = served
    assert rel in listed(out) and (data / rel).is_file()  # the manifest lists it: only the content refuses it
    for prefix in ("/files/", "/preview/"):
        status, headers, body = exchange(server, "GET", prefix + rel)
        assert status == 404, (prefix, rel, status, headers.get("Content-Type"))
        assert b"<script" not in body and headers.get("Content-Type") == "application/json"


def test_dataset_files_go_out_as_images_only(served):
    server, data, out = served
    # a real JPEG with a page appended decodes: it goes out, as a JPEG the browser may not sniff
    assert "asamma/polyglot.jpg" in listed(out)
    status, headers, body = exchange(server, "GET", "/files/asamma/polyglot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    # the type comes from the content: a PNG is image/png whatever its name
    status, headers, body = exchange(server, "GET", "/files/anpage/anpage.2.small.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
    for rel in sorted(listed(out)):
        if (data / rel).is_file() and not (data / rel).is_symlink():
            status, headers, _ = exchange(server, "GET", "/files/" + "/".join(quote(p) for p in rel.split("/")))
            assert status == 404 or headers["Content-Type"] in ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"), rel


def test_a_format_browsers_cannot_show_is_re_encoded(served, shared_data, tmp_path):
    _, _, out = served
    tiny = tmp_path / "pgm"
    shutil.copytree(shared_data / "orl_att40" / "s05", tiny / "s05")
    o = tmp_path / "pgm_out"
    assert run_cli("run", tiny, "--out", o, "--jobs", "1", "--quality", "image", "--quiet") == 0
    server = make_server(o, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rel = sorted(listed(o))[0]
        assert rel.endswith(".pgm")
        status, headers, body = exchange(server, "GET", "/files/" + rel)
        assert status == 200 and headers["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
    finally:
        server.shutdown()
        server.server_close()


def test_links_out_of_the_dataset_are_not_served(served, tmp_path):
    server, data, out = served
    secret = (data.parent / "outside" / "secret.jpg").read_bytes()
    assert "anpage/link_out.jpg" in listed(out)  # the run followed the link and listed it
    for prefix in ("/files/", "/preview/"):
        assert request(server, "GET", prefix + "anpage/link_out.jpg")[0] == 404
    # a link planted after the run, in place of a listed file, is refused too; one inside is fine
    victim = data / "anpage" / "anpage.5.jpg"
    original = victim.read_bytes()
    try:
        victim.unlink()
        victim.symlink_to(data.parent / "outside" / "secret.jpg")
        status, body = request(server, "GET", "/files/anpage/anpage.5.jpg")
        assert status == 404 and body != secret
        assert request(server, "GET", "/preview/anpage/anpage.5.jpg")[0] == 404
        victim.unlink()
        victim.symlink_to("anpage.4.jpg")
        status, body = request(server, "GET", "/files/anpage/anpage.5.jpg")
        assert status == 200 and body == (data / "anpage" / "anpage.4.jpg").read_bytes()
        # a folder of the dataset swapped for a link out
        moved = data.parent / "anpage_moved"
        (data / "anpage").rename(moved)
        (data / "anpage").symlink_to(moved)
        assert request(server, "GET", "/files/anpage/anpage.1.jpg")[0] == 404
        (data / "anpage").unlink()
        moved.rename(data / "anpage")
    finally:
        if victim.is_symlink():
            victim.unlink()
        victim.write_bytes(original)
    assert request(server, "GET", "/files/anpage/anpage.5.jpg")[0] == 200


def test_every_response_has_a_policy_and_nosniff(served):
    server, _, out = served
    port = server.server_address[1]
    thumb = "/" + next((out / "report_files" / "t").rglob("*.jpg")).relative_to(out).as_posix()
    seen = []
    for method, path, kw in [
        ("GET", "/", {}), ("GET", "/api/data", {}), ("GET", "/api/run", {}), ("GET", "/api/overrides", {}),
        ("GET", "/files/anpage/anpage.1.jpg", {}), ("GET", "/preview/anpage/anpage.1.jpg", {}), ("GET", thumb, {}),
        ("GET", "/manifest.csv", {}), ("GET", "/nope", {}), ("GET", "/files/anpage/notes.html", {}),
        ("GET", "/api/data", {"host": "evil.example"}), ("HEAD", "/", {}),
        ("POST", "/api/override", {"body": {"path": HOSTILE_TARGET, "action": "keep"}}),
    ]:
        status, headers, _ = exchange(server, method, path, **kw)
        seen.append(status)
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        csp = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, (path, csp)
        if path != "/":
            assert "sandbox" in csp, path
    assert {200, 403, 404} <= set(seen)
    # a request the standard library rejects before it reaches the app (send_error)
    reply = raw_exchange(server, f"BREW / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = reply.split(b"\r\n\r\n", 1)[0].lower()
    assert status_of(reply) == 501 and b"content-security-policy: default-src 'none'" in head and b"nosniff" in head


def test_the_page_runs_only_its_own_script(served):
    server, _, _ = served
    status, headers, body = exchange(server, "GET", "/")
    html = body.decode("utf-8")
    csp = {d.split()[0]: d.split()[1:] for d in headers["Content-Security-Policy"].split(";") if d.strip()}
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert len(scripts) == 1
    digest = "'sha256-" + base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode() + "'"
    assert csp["script-src"] == [digest]  # no 'unsafe-inline', no other source
    assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"] and csp["object-src"] == ["'none'"]


def test_state_changes_need_the_session_token(served, tmp_path):
    server, data, out = served
    before = (out / "manifest.csv").read_bytes()
    port = server.server_address[1]
    same = {"Origin": f"http://127.0.0.1:{port}"}
    other = make_server(out, port=0)
    other.server_close()
    assert other.app.token != server.app.token and len(server.app.token) >= 32
    for headers in (same, dict(same, **{"X-Facesieve-Token": "x" * 43}), dict(same, **{"X-Facesieve-Token": other.app.token}),
                    {"X-Facesieve-Token": ""}):
        assert request(server, "POST", "/api/override", headers=headers, body={"path": HOSTILE_TARGET, "action": "remove"})[0] == 403
        assert request(server, "POST", "/api/apply", headers=headers, body={})[0] == 403
        status, body = request(server, "POST", "/api/run", headers=headers, body={"dataset": str(data), "out": str(tmp_path / "o")})
        assert status == 403 and b"Token" in body
    assert not overrides_of(out) and not (tmp_path / "o").exists()
    assert (out / "manifest.csv").read_bytes() == before
    # the token is in the page the server sends, not in the data API
    assert page_data(request(server, "GET", "/")[1].decode())["token"] == server.app.token
    assert server.app.token.encode() not in request(server, "GET", "/api/data")[1]
    assert server.app.token.encode() not in (out / "report.html").read_bytes()


def test_another_port_of_the_same_host_cannot_write(served):
    server, _, out = served
    port = server.server_address[1]
    token = {"X-Facesieve-Token": server.app.token}
    body = {"path": HOSTILE_TARGET, "action": "remove"}
    for h in ({"Origin": f"http://127.0.0.1:{port + 1}"}, {"Origin": f"http://localhost:{port + 1}"},
              {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-site"}, {"Origin": "null"}):
        assert request(server, "POST", "/api/override", headers=dict(h, **token), body=body)[0] == 403, h
    assert request(server, "GET", "/", host=f"127.0.0.1:{port + 1}")[0] == 403  # DNS rebinding names another host
    assert not overrides_of(out)


def post_raw(server, path: str, body: bytes, extra: str = "", length: str | None = None) -> bytes:
    port = server.server_address[1]
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"X-Facesieve-Token: {server.app.token}\r\n"
            + ("" if length == "" else f"Content-Length: {len(body) if length is None else length}\r\n") + extra + "\r\n")
    return raw_exchange(server, head.encode() + body)


@pytest.mark.parametrize("length,extra,want", [
    ("-1", "", 400), ("+5", "", 400), (" 0x10", "", 400), ("5", "Content-Length: 5\r\n", 400),
    (str(10**12), "", 413), (str((1 << 20) + 1), "", 413), ("", "Transfer-Encoding: chunked\r\n", 411),
])
def test_bad_content_lengths_are_refused(served, length, extra, want):
    server, _, out = served
    reply = post_raw(server, "/api/override", b'{"path": "anpage/anpage.1.jpg", "action": "remove"}', extra, length)
    assert status_of(reply) == want, reply[:200]
    assert not overrides_of(out)


@pytest.mark.parametrize("path,body", [
    ("/api/override", b'\xff\xfe{"path": "anpage/anpage.1.jpg", "action": "keep"}'),
    ("/api/override", b'{"path": "anpage/\xc3(.jpg", "action": "keep"}'),
    ("/api/override", b"[" * 200_000 + b"]" * 200_000),
    ("/api/override", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ("/api/run", b'{"dataset": "/tmp", "out": "/tmp/x", "keep": 1e309}'),
    ("/api/run", b'{"dataset": "/tmp", "out": "/tmp/x", "near_dup_threshold": NaN}'),
    ("/api/run", b'{"dataset": "/tmp", "out": "/tmp/x", "near_dup_threshold": -Infinity}'),
    ("/api/run", b'{"dataset": "/tmp", "out": "/tmp/x", "keep": "1e309"}'),
    ("/api/run", b'{"dataset": "/tmp", "out": "/tmp/x", "keep": true}'),
    ("/api/run", b'{"dataset": "/tmp", "out": "/tmp/x", "jobs": 99999999999999999999999}'),
    ("/api/run", b'{"dataset": "/tmp", "out": "/tmp/x", "outliers": "no"}'),
    ("/api/run", b'{"dataset": ["/tmp"], "out": "/tmp/x"}'),
    ("/api/apply", b'"just a string"'),
], ids=["utf16-bom", "bad-utf8", "deep-array", "deep-object", "1e309", "nan", "-inf", "keep-text-1e309", "keep-bool",
        "huge-int", "outliers-text", "dataset-list", "not-an-object"])
def test_malformed_json_is_a_plain_400(served, path, body):
    server, _, out = served
    reply = post_raw(server, path, body)
    assert status_of(reply) == 400, reply[:300]
    payload = reply.split(b"\r\n\r\n", 1)[1]
    assert no_exception_text(payload), payload
    assert not overrides_of(out) and not server.app.running()


@pytest.mark.parametrize("field,value", [
    ("detector", "yunet:{evil}"), ("detector", "retinaface:{evil}"), ("detector", '{{"weights": "{evil}"}}'),
    ("embedder", "arcface-r100:{evil}"), ("embedder", 'arcface-r100:{{"weights": "{evil}"}}'), ("embedder", "{evil}"),
    ("quality", "onnx:{evil_onnx}"), ("quality", "image+onnx:{evil_onnx}"), ("quality", "ers:{folder}"),
    ("quality", "ediffiqa:{evil}"), ("detector", "../../{evil}"),
])
def test_run_form_takes_no_model_files(served, shared_data, tmp_path, field, value):
    """The form takes catalogue names only: a path in a web form could name any file (a PyTorch
    checkpoint is a pickle), so weights files stay a command-line option."""
    server, _, _ = served
    tiny = tmp_path / "tiny"
    shutil.copytree(shared_data / "orl_att40" / "s01", tiny / "s01")
    evil = tmp_path / "evil.pth"
    evil.write_bytes(b"\x80\x04not really a checkpoint")
    (tmp_path / "evil.onnx").write_bytes(b"not a model")
    spec = value.format(evil=evil, evil_onnx=tmp_path / "evil.onnx", folder=tmp_path)
    body = {"dataset": str(tiny), "out": str(tmp_path / "o"), "quality": "image", field: spec}
    status, reply = request(server, "POST", "/api/run", headers=origin(server), body=body)
    assert status == 400, reply
    assert not server.app.running() and not (tmp_path / "o").exists()


def test_run_form_names_from_the_catalogue_pass(served, tmp_path):
    from facesieve.serve.app import Refused, run_options

    opts = run_options({"detector": "YuNet", "embedder": "dlib", "quality": "image+ediffiqa:t", "keep": "3", "jobs": 2,
                        "near_dup_threshold": "0.9", "outliers": False})
    assert opts == {"detector": "yunet", "embedder": "dlib", "quality": "image+ediffiqa:T", "keep": 3, "jobs": 2,
                    "near_dup_threshold": 0.9, "outliers": False}
    with pytest.raises(Refused):
        run_options({"embedder": "sface:/tmp/x.onnx"})


def test_half_sent_requests_do_not_hold_threads(served):
    _, _, out = served
    server = make_server(out, port=0, timeout=1.0, max_threads=8)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    socks = []
    try:
        before = threading.active_count()
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall(f"POST /api/override HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      f"X-Facesieve-Token: {server.app.token}\r\nContent-Length: 100\r\n\r\n{{\"pa".encode()
                      if i % 2 else f"GET /api/run HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
            socks.append(s)
        time.sleep(0.5)
        assert threading.active_count() - before <= 8
        # each is answered (408, 503) or closed once silent for the timeout; none is held for good
        t0 = time.time()
        for s in socks:
            while s.recv(65536):
                pass
        assert time.time() - t0 < 15
        assert request(server, "GET", "/api/run")[0] == 200
        assert threading.active_count() - before <= 2
    finally:
        for s in socks:
            s.close()
        server.shutdown()
        server.server_close()


def test_concurrent_overrides_are_all_applied(served, tmp_path):
    _, _, out = served
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    (copy / ".facesieve" / "overrides.json").unlink(missing_ok=True)
    server = make_server(copy, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        manifest = pd.read_csv(copy / "manifest.csv", dtype=str, keep_default_na=False)
        paths = list(manifest[manifest["action"].isin(["keep", "remove"])]["path"][:24])
        assert len(paths) == 24
        gate = threading.Barrier(24)
        results: dict[str, int] = {}

        def one(p: str) -> None:
            gate.wait()
            try:
                results[p] = request(server, "POST", "/api/override", headers=origin(server), body={"path": p, "action": "keep"})[0]
            except OSError as e:
                results[p] = -1
                raise AssertionError(e) from None

        threads = [threading.Thread(target=one, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == dict.fromkeys(paths, 200)
        stored = json.loads((copy / ".facesieve" / "overrides.json").read_text())
        assert set(stored.get("overrides", stored)) == set(paths)
        assert server.request_queue_size >= 64
    finally:
        server.shutdown()
        server.server_close()
