"""report.html: written by every run, self-contained, complete (groups, pairs, thumbnails), safe with
hostile names, and small enough for 1,000 identities."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesieve.cli import main
from facesieve.report import render_page
from facesieve.report.data import collect
from facesieve.report.thumbs import thumb_relpath
from facesieve.workspace import Workspace

IDENTITIES = ("anpage", "asamma", "9336923")


def build_subset(shared: Path, root: Path) -> Path:
    """Three essex identities (still video frames), plus: near-copies of three frames (resized,
    mirrored, re-encoded: near-duplicate groups), one photo filed under a second identity
    re-encoded (a cross-identity near copy), a byte copy (exact duplicate), a picture with no face
    and a stray text file."""
    src = shared / "essex_faces94_19"
    data = root / "data"
    for ident in IDENTITIES:
        (data / ident).mkdir(parents=True)
        for f in sorted((src / ident).glob("*.jpg"))[:12]:
            shutil.copy2(f, data / ident / f.name)
    img = Image.open(src / "anpage" / "anpage.1.jpg").convert("RGB")
    img.save(data / "asamma" / "moved_from_anpage.jpg", quality=70)
    frame = Image.open(src / "anpage" / "anpage.2.jpg").convert("RGB")
    frame.resize((frame.width * 3 // 4, frame.height * 3 // 4), Image.LANCZOS).save(data / "anpage" / "anpage.2.small.png")
    Image.open(src / "9336923" / "9336923.2.jpg").transpose(Image.FLIP_LEFT_RIGHT).save(data / "9336923" / "9336923.2.mirrored.png")
    Image.open(src / "asamma" / "asamma.3.jpg").convert("RGB").save(data / "asamma" / "asamma.3.q40.jpg", quality=40)
    shutil.copy2(src / "asamma" / "asamma.1.jpg", data / "asamma" / "asamma.copy.jpg")
    Image.fromarray(np.full((480, 480, 3), 200, np.uint8)).save(data / "9336923" / "blank_wall.jpg")
    (data / "notes.txt").write_text("not an image\n")
    return data


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def page_data(html: str) -> dict:
    m = re.search(r'<script id="facesieve-data" type="application/json">(.*?)</script>', html, re.DOTALL)
    assert m, "the page embeds no data"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def small_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = build_subset(shared_data, root)
    out = root / "out"
    assert run_cli("run", data, "--out", out, "--keep", "2", "--jobs", "2", "--quality", "image", "--quiet") == 0
    return data, out


def test_every_run_writes_a_self_contained_report(small_run):
    _, out = small_run
    page = out / "report.html"
    assert page.is_file()
    html = page.read_text("utf-8")
    # nothing fetched from anywhere: every src/href is relative (or in-page, or data:)
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', html)
    assert all(not re.match(r"^(https?:)?//", r, re.IGNORECASE) for r in refs), refs
    assert "<link rel=\"stylesheet\"" not in html and "<script src" not in html
    d = page_data(html)
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    shown = manifest[manifest["action"] != "ignore"]  # a README is no identity's face (issue 20)
    assert {i["name"] for i in d["identities"]} == set(shown["identity"])
    assert sum(len(i["faces"]) for i in d["identities"]) == len(shown)
    assert [p for p, _ in d["ignored"]] == list(manifest.loc[manifest["action"] == "ignore", "path"])
    assert d["summary"]["files"] == len(manifest)
    assert set(d["summary"]["stage_seconds"]) >= {"scan", "faces", "embed", "decide"}
    assert d["files_href"].endswith("data/")  # links to the originals, relative to the report
    assert (out / d["files_href"] / "anpage").is_dir()


def test_thumbnails_are_small_jpegs_of_every_readable_file(small_run):
    _, out = small_run
    d = page_data((out / "report.html").read_text("utf-8"))
    faces = [f for i in d["identities"] for f in i["faces"]]
    actions = d["actions"]
    readable = [f for f in faces if actions[f[1]] != "error"]
    assert readable and all(f[4] for f in readable)
    assert not any(f[4] for f in faces if actions[f[1]] == "error")
    for f in readable:
        p = out / thumb_relpath(f[4])
        with Image.open(p) as im:
            assert im.format == "JPEG" and max(im.size) <= 96
        assert p.stat().st_size < 12_000
    # the blank picture has no face: its thumbnail is the picture itself (uniform grey)
    blank = next(f for f in faces if f[0].endswith("blank_wall.jpg"))
    assert d["reasons"][blank[2]] == "no_face"
    px = np.asarray(Image.open(out / thumb_relpath(blank[4])))
    assert px.std() < 3


def test_groups_pairs_and_selection_are_in_the_page(small_run):
    _, out = small_run
    d = page_data((out / "report.html").read_text("utf-8"))
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False).set_index("path")
    near = pd.read_parquet(out / ".facesieve" / "near_groups.parquet")
    by_name = {i["name"]: i for i in d["identities"]}
    n_groups = sum(len(i["groups"]) for i in d["identities"])
    assert n_groups == near.groupby(["identity", "group"]).ngroups > 0
    for ident in by_name.values():
        for g in ident["groups"]:
            first = ident["faces"][g[0]]
            assert near.set_index("path").loc[first[0], "is_kept"]  # the kept face leads its group
            assert all(manifest.loc[ident["faces"][i][0], "duplicate_of"] == first[0] for i in g[1:])
    # K=2 is shown with every identity that had faces left to select from
    selection = pd.read_csv(out / "selection.csv", dtype=str)
    assert len(selection) >= 2
    assert all(by_name[i]["sel"]["k"] == "2" and by_name[i]["sel"]["method"] == m for i, m in zip(selection["identity"], selection["method"]))
    # the re-encoded photo under another identity: a cross-identity pair with its similarity
    pairs = {frozenset(c[:2]): c[4] for c in d["cross"]}
    key = frozenset({"anpage/anpage.1.jpg", "asamma/moved_from_anpage.jpg"})
    assert key in pairs and pairs[key] > 0.9
    # the byte copy: an exact duplicate naming the original
    copy = next(f for f in by_name["asamma"]["faces"] if f[0] == "asamma/asamma.copy.jpg")
    orig = next(f for f in by_name["asamma"]["faces"] if f[0] == "asamma/asamma.1.jpg")
    assert {d["reasons"][copy[2]], d["reasons"][orig[2]]} & {"exact_duplicate"}
    # the identity similarity matrix: every identity with a face, 8-bit cells, a bright diagonal
    sim = d["plots"]["similarity"]
    assert sorted(sim["labels"]) == sorted(IDENTITIES)
    codes = np.frombuffer(base64.b64decode(sim["codes"]), np.uint8).reshape(3, 3)
    assert (np.diag(codes) > codes[~np.eye(3, dtype=bool)].max()).all()
    assert -1 <= sim["lo"] < sim["hi"] <= 1


def test_no_report_flag_skips_it(small_run):
    data, out = small_run
    (out / "report.html").unlink()
    assert run_cli("run", data, "--out", out, "--keep", "2", "--jobs", "1", "--quality", "image", "--quiet", "--no-report") == 0
    assert not (out / "report.html").exists()
    assert run_cli("run", data, "--out", out, "--keep", "2", "--jobs", "1", "--quality", "image", "--quiet") == 0
    assert (out / "report.html").is_file()


def hostile_data() -> dict:
    name = '</script><script>window.pwned=1</script><!--'
    return {
        "format": 1, "version": "x", "generated": "", "output": "", "dataset": "{{js}}", "summary": {}, "actions": ["keep"],
        "reasons": ["kept"], "fields": [], "identities": [{"name": name, "faces": [[name + "/a.jpg", 0, 0, 0.5, "", "", None, None, "{{css}}", ""]],
                                                         "groups": [], "sel": None}],
        "cross": [], "overlaps": [], "plots": {}, "files_href": "", "app": False, "manual": "manual", "n_pending": 0,
    }


def test_hostile_names_cannot_break_out_of_the_data():
    html = render_page(hostile_data(), title="<b>t</b>")
    assert "window.pwned=1</script>" not in html
    assert html.count("</script>") == 2  # the data block and the script block, nothing more
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in html
    d = page_data(html)
    assert d["identities"][0]["name"].startswith("</script>")
    assert d["dataset"] == "{{js}}"  # placeholders inside the data are left alone


def synthetic_output(root: Path, n_ids: int = 1000, per_id: int = 20) -> Path:
    """An output folder as a run would leave it, for n_ids identities, without running any model."""
    out = root / "big"
    ws = Workspace(out / ".facesieve")
    ws.create({"dataset": str(root / "nowhere")})
    rng = np.random.default_rng(0)
    n = n_ids * per_id
    ident = np.repeat([f"id{i:04d}" for i in range(n_ids)], per_id)
    paths = [f"{i}/{i}_{j:02d}.jpg" for i, j in zip(ident, np.tile(np.arange(per_id), n_ids))]
    action = rng.choice(["keep", "remove", "review"], size=n, p=[0.5, 0.4, 0.1])
    reason = np.where(action == "keep", "selected", np.where(action == "remove", "near_duplicate", "outlier"))
    manifest = pd.DataFrame({
        "path": paths, "identity": ident, "action": action, "reason": reason, "quality": rng.random(n),
        "duplicate_of": np.where(action == "remove", [f"{i}/{i}_00.jpg" for i in ident], ""),
        "similarity": np.where(action == "remove", 0.9 + 0.1 * rng.random(n), np.nan),
        "outlier_score": rng.random(n), "detail": "", "status": "ok",
        "image_id": [f"{k:016x}" for k in range(n)], "sha256": "ab" * 32, "det_score": 0.9,
    })
    manifest.to_csv(out / "manifest.csv", index=False)
    groups = manifest[manifest["reason"] == "near_duplicate"]
    kept = pd.DataFrame({"path": [f"{i}/{i}_00.jpg" for i in groups["identity"].unique()]})
    kept["identity"] = kept["path"].str.split("/").str[0]
    near = pd.concat([
        pd.DataFrame({"path": kept["path"], "identity": kept["identity"], "is_kept": True, "similarity": np.nan, "signal": ""}),
        pd.DataFrame({"path": groups["path"], "identity": groups["identity"], "is_kept": False,
                      "similarity": groups["similarity"], "signal": "both"}),
    ])
    near["group"] = near["identity"].str[2:].astype(int)
    ws.write_table("near_groups.parquet", near)
    (out / "summary.json").write_text(json.dumps({"files": n, "identities": n_ids, "kept": int((action == "keep").sum()),
                                                  "stage_seconds": {"scan": 1.0}, "by_reason": {}}))
    return out


def test_a_thousand_identities_stay_a_small_page(tmp_path):
    out = synthetic_output(tmp_path)
    t = time.perf_counter()
    data = collect(out, Workspace(out / ".facesieve"), thumbs={})
    html = render_page(data)
    seconds = time.perf_counter() - t
    assert len(data["identities"]) == 1000 and sum(len(i["faces"]) for i in data["identities"]) == 20_000
    assert len(html.encode()) < 4_000_000, len(html.encode())
    assert seconds < 20
