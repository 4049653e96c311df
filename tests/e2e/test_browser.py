"""The report and the review app in a real browser: Debian's Chromium driven by Playwright (never a
downloaded browser). Screenshots go to test-artifacts/ for a person to look at."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import serve_folder
from tests.unit.report.test_report import hostile_data, synthetic_output
from tests.unit.serve.test_serve import HOSTILE_FILES, HOSTILE_TARGET, overrides_of, plant_hostile_files

from facesieve.cli import main
from facesieve.report import render_page
from facesieve.serve.app import make_server
from facesieve.report.data import collect
from facesieve.workspace import Workspace

pytestmark = [pytest.mark.browser, pytest.mark.heavy]

CHROMIUM = Path(os.environ.get("FACESIEVE_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps"]


def _unavailable(reason: str):
    if os.environ.get("FACESIEVE_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def essex_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "essex_clean"
    # still video frames form near-duplicate groups by default (docs/thresholds.md)
    assert main(["run", str(shared_data / "essex_faces94_19"), "--out", str(out), "--keep", "5", "--jobs", "2", "--quality", "image",
                 "--quiet"]) == 0
    return out


class Watched:
    """A page that remembers its errors and every URL it asked for."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1360, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.responses: list[tuple[str, dict]] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("response", lambda r: self.responses.append((r.url, r.headers)))

    def open(self, url: str) -> float:
        t = time.perf_counter()
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready]", timeout=30_000)
        return time.perf_counter() - t

    def search(self, name: str) -> None:
        self.page.fill("#search", name)
        self.page.wait_for_function(
            "n => document.querySelectorAll('article.ident').length === 1 && "
            "document.querySelector('article.ident').dataset.identity === n", arg=name, timeout=10_000)


def test_report_find_an_identity_and_see_its_groups(browser, essex_run, artifacts_dir):
    w = Watched(browser)
    seconds = w.open((essex_run / "report.html").as_uri())
    w.page.screenshot(path=str(artifacts_dir / "report_summary.png"))
    assert w.page.locator("article.ident").count() == 10  # the first page of 20
    m = pd.read_csv(essex_run / "manifest.csv")
    grouped = m[m["reason"].isin(["near_duplicate", "near_identical_shot"])]["identity"].value_counts()
    ident = grouped.index[0]  # the identity with the most grouped frames (the run's own decision)
    w.search(ident)
    card = w.page.locator(f'article.ident[data-identity="{ident}"]')
    groups = card.locator(".group")
    assert groups.count() >= 1
    first = groups.first
    assert first.locator("figure.face").count() >= 2
    assert first.locator("figure.face").first.locator(".star").count() == 1  # the kept face is marked
    assert first.locator('figure.face[data-action="remove"]').count() >= 1
    img = first.locator("figure.face img").first
    img.scroll_into_view_if_needed()
    w.page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=10_000)
    card.screenshot(path=str(artifacts_dir / "report_search_identity.png"))
    # no network: everything came from the disk (or the page itself)
    assert all(u.startswith(("file:", "data:")) for u in w.requests), [u for u in w.requests if not u.startswith("file:")]
    assert not w.errors, w.errors
    assert seconds < 15
    # the similarity heat map names the pair under the pointer
    heat = w.page.locator("canvas.heat")
    heat.scroll_into_view_if_needed()
    box = heat.bounding_box()
    w.page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3)
    tip = w.page.locator(".heat-tip")
    assert tip.is_visible() and "(within)" in tip.inner_text()
    w.page.add_style_tag(content="header.top { position: static; }")  # keep the bar out of element shots
    w.page.locator("#plots").screenshot(path=str(artifacts_dir / "report_plots.png"))
    w.page.close()


def test_app_flip_a_removed_face_to_keep_and_apply(browser, essex_run, artifacts_dir):
    server = make_server(essex_run, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w = Watched(browser)
        w.open(server.url)
        w.search("anpage")
        face = w.page.locator('article.ident[data-identity="anpage"] .group figure.face[data-action="remove"]').first
        path = face.get_attribute("data-path")
        assert path and not (essex_run / path).exists()
        face.locator('button[data-act="keep"]').click()
        w.page.wait_for_function("() => document.getElementById('pending-label').textContent.startsWith('1 change')")
        w.page.screenshot(path=str(artifacts_dir / "app_pending_keep.png"))
        w.page.click("#apply-btn")
        w.page.wait_for_selector("#toast:not([hidden])", timeout=60_000)
        tile = w.page.locator(f'article.ident[data-identity="anpage"] figure.face[data-path="{path}"]').first
        assert tile.get_attribute("data-reason") == "manual" and tile.get_attribute("data-action") == "keep"
        w.page.screenshot(path=str(artifacts_dir / "app_applied.png"))
        assert (essex_run / path).is_file()
        row = pd.read_csv(essex_run / "manifest.csv", dtype=str, keep_default_na=False).set_index("path").loc[path]
        assert (row["action"], row["reason"]) == ("keep", "manual")
        assert not w.errors, w.errors  # the page works under its policy (a violation is a console error)
        assert all(u.startswith((server.url, "data:")) for u in w.requests)
        from_app = [(u, h) for u, h in w.responses if u.startswith(server.url)]
        assert len(from_app) > 5 and all("frame-ancestors 'none'" in h.get("content-security-policy", "") and
                                         h.get("x-content-type-options") == "nosniff" for _, h in from_app), from_app
        w.page.close()
    finally:
        server.shutdown()
        server.server_close()


def test_app_starts_a_run_and_shows_its_progress(browser, shared_data, tmp_path, artifacts_dir):
    tiny = tmp_path / "tiny"
    for ident in ("s03", "s04"):
        shutil.copytree(shared_data / "orl_att40" / ident, tiny / ident)
    server = make_server(None, port=0)  # no output yet: the page opens on the run form
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w = Watched(browser)
        w.open(server.url)
        assert w.page.locator("#run-panel").is_visible()
        w.page.fill('#run-form input[name="dataset"]', str(tiny))
        w.page.fill('#run-form input[name="out"]', str(tmp_path / "tiny_out"))
        w.page.fill('#run-form input[name="keep"]', "4")
        w.page.fill('#run-form input[name="jobs"]', "1")
        w.page.fill('#run-form input[name="quality"]', "image")
        w.page.click("#run-start")
        w.page.wait_for_selector(".progress .stage", timeout=30_000)
        w.page.screenshot(path=str(artifacts_dir / "app_run_progress.png"))
        w.page.wait_for_selector('.progress[data-state="done"]', timeout=240_000)
        w.page.wait_for_selector('article.ident[data-identity="s03"]', timeout=30_000)
        w.page.screenshot(path=str(artifacts_dir / "app_run_done.png"))
        stages = w.page.locator(".progress .stage").evaluate_all("els => els.map(e => e.dataset.stage)")
        assert {"scan", "faces", "embed", "decide", "apply"} <= set(stages)
        assert (tmp_path / "tiny_out" / "report.html").is_file()
        assert pd.read_csv(tmp_path / "tiny_out" / "selection.csv")["k"].eq(4).all()
        assert not w.errors, w.errors
        w.page.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_thousand_identities_load_fast_and_search(browser, tmp_path, artifacts_dir):
    out = synthetic_output(tmp_path)
    (out / "report.html").write_text(render_page(collect(out, Workspace(out / ".facesieve"), thumbs={})), "utf-8")
    w = Watched(browser)
    seconds = w.open((out / "report.html").as_uri())
    assert w.page.locator("article.ident").count() == 10  # paginated, not 1,000 cards
    assert "1000 identities" in w.page.inner_text("#id-count")
    w.search("id0737")
    w.page.fill("#search", "id07")
    w.page.wait_for_function("() => document.getElementById('id-count').textContent.startsWith('100 of 1000')")
    w.page.screenshot(path=str(artifacts_dir / "report_1000_identities.png"))
    assert not w.errors, w.errors
    assert seconds < 10, seconds
    w.page.close()


def test_hostile_names_render_as_text(browser, tmp_path):
    page = tmp_path / "hostile.html"
    page.write_text(render_page(hostile_data()), "utf-8")
    w = Watched(browser)
    w.open(page.as_uri())
    assert w.page.evaluate("() => window.pwned") is None
    assert "</script><script>window.pwned=1" in w.page.inner_text("article.ident h3")
    w.page.close()


# ---------------------------------------------------------------- hostile datasets and pages (issue 20)


@pytest.fixture(scope="module")
def hostile_run(shared_data, tmp_path_factory):
    """Two essex identities plus the hostile files of test_serve (a page and an SVG with script that
    would write an override, HTML named .jpg, a JPEG with a page appended, a link out)."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    for ident in ("anpage", "asamma"):
        (data / ident).mkdir(parents=True)
        for f in sorted((shared_data / "essex_faces94_19" / ident).glob("*.jpg"))[:5]:
            shutil.copy2(f, data / ident / f.name)
    plant_hostile_files(shared_data, data, root)
    out = root / "out"
    assert main(["run", str(data), "--out", str(out), "--jobs", "2", "--quality", "image", "--quiet"]) == 0
    assert HOSTILE_TARGET in set(pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)["path"])
    server = make_server(out, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, data, out
    server.shutdown()
    server.server_close()


def assert_no_script_ran(w: Watched, out: Path) -> None:
    assert w.page.title() != "pwned"
    assert not [u for u in w.requests if "/pwned" in u], w.requests
    assert overrides_of(out) == {}


def test_dataset_files_run_no_script_at_the_apps_origin(browser, hostile_run):
    server, _, out = hostile_run
    for rel in (*HOSTILE_FILES, "asamma/polyglot.jpg"):
        w = Watched(browser)
        response = w.page.goto(server.url + "files/" + rel)
        w.page.wait_for_timeout(700)  # time for a script to run and its requests to go out, had any run
        assert response.headers["content-type"].startswith(("image/", "application/json")), (rel, response.headers)
        assert "sandbox" in response.headers["content-security-policy"]
        assert_no_script_ran(w, out)
        w.page.close()
    # the app's own page cannot be made to load them as documents or plugins either
    w = Watched(browser)
    w.open(server.url)
    w.page.evaluate("""rels => { for (const r of rels) {
        for (const tag of ["iframe", "object", "embed", "img"]) {
          const e = document.createElement(tag);
          e.setAttribute(tag === "object" ? "data" : "src", "files/" + r);
          document.body.append(e);
        } } }""", list(HOSTILE_FILES))
    w.page.wait_for_timeout(1000)
    assert_no_script_ran(w, out)
    # an image that decodes still shows, served as an image
    loaded = w.page.evaluate("""() => new Promise(ok => { const i = new Image(); i.onload = () => ok(i.naturalWidth);
        i.onerror = () => ok(-1); i.src = "files/asamma/polyglot.jpg"; })""")
    assert loaded > 0
    w.page.close()


def test_state_changes_from_the_page_need_the_token(browser, hostile_run):
    server, _, out = hostile_run
    w = Watched(browser)
    w.open(server.url)
    post = """token => fetch("api/override", {method: "POST", body: JSON.stringify({path: "%s", action: "remove"}),
        headers: Object.assign({"Content-Type": "application/json"}, token ? {"X-Facesieve-Token": token} : {})})
        .then(r => r.status)""" % HOSTILE_TARGET
    assert w.page.evaluate(post, None) == 403
    assert w.page.evaluate(post, "not-the-token") == 403
    assert overrides_of(out) == {}
    token = w.page.evaluate("() => JSON.parse(document.getElementById('facesieve-data').textContent).token")
    assert token == server.app.token
    assert w.page.evaluate(post, token) == 200
    assert overrides_of(out) == {HOSTILE_TARGET: "remove"}
    assert w.page.evaluate(post.replace('action: "remove"', 'action: "auto"'), token) == 200
    assert overrides_of(out) == {}
    w.page.close()


ATTACK = """<!doctype html><meta charset="utf-8"><title>attacker</title><pre id="log"></pre>
<script>
const APP = "%(app)s", body = JSON.stringify({path: "%(target)s", action: "remove"});
const log = (m) => { document.getElementById("log").textContent += m + "\\n"; };
fetch(APP + "api/override", {method: "POST", mode: "no-cors", body, headers: {"Content-Type": "text/plain"}}).then(() => log("sent"), () => log("err"));
fetch(APP + "api/override", {method: "POST", body, headers: {"Content-Type": "application/json"}}).then((r) => log("read " + r.status), () => log("blocked"));
fetch(APP).then((r) => r.text()).then((t) => log("stole " + t.length), () => log("blocked"));
</script>
<form id="f" method="POST" enctype="text/plain" action="%(app)sapi/override" target="sink">
<input name='{"path": "%(target)s", "action": "remove", "x": "' value='"}'></form>
<script>
// looked at once the frame has loaded (the app's page, or the error page of a refused frame): a
// fixed delay could look while it still held its first, empty, same-origin document ("framed 0")
const probe = () => { try { log("framed " + document.getElementById("framed").contentDocument.body.innerHTML.length); }
                      catch (e) { log("frame blocked"); } };
</script>
<iframe name="sink"></iframe><iframe id="framed" src="%(app)s" onload="probe()"></iframe>
<script>document.getElementById("f").submit();</script>
"""


def test_a_page_on_another_port_cannot_write_overrides(browser, hostile_run, tmp_path):
    server, _, out = hostile_run
    site = tmp_path / "attacker"
    site.mkdir()
    (site / "attack.html").write_text(ATTACK % {"app": server.url, "target": HOSTILE_TARGET})
    redirects = [f'<script>location = "{server.url}files/{rel}";</script>' for rel in HOSTILE_FILES]
    for i, page in enumerate(redirects):
        (site / f"redirect{i}.html").write_text(page)
    with serve_folder(site) as (base, _):
        assert base.split(":")[-1] != str(server.server_address[1])
        w = Watched(browser)
        w.page.goto(base + "/attack.html")
        w.page.wait_for_timeout(2000)
        text = w.page.inner_text("#log")
        assert "stole" not in text and "read 2" not in text and "framed" not in text.replace("frame blocked", ""), text
        assert overrides_of(out) == {}
        w.page.close()
        for i in range(len(redirects)):  # an attacker's page that sends the browser to a dataset file
            w = Watched(browser)
            w.page.goto(f"{base}/redirect{i}.html")
            w.page.wait_for_url(server.url + "files/**", timeout=10_000)
            w.page.wait_for_timeout(700)
            assert_no_script_ran(w, out)
            w.page.close()
