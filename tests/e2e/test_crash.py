"""Crash safety: `facesieve run` killed with SIGKILL at random moments, then re-run to completion,
gives exactly the manifest and output of an uninterrupted run, with nothing half-written."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = 7
KILLS_EARLY = 3  # random moments over a whole run: scan, faces (+embed), ...
KILLS_LATE = 3  # random moments over a resumed run's tail: collect, quality, decide, apply


@pytest.fixture(scope="module")
def dataset(shared_data, tmp_path_factory) -> Path:
    """96 real images: 6 ORL identities (grey PGM crops) and 6 Essex ones (colour frames), 8 each."""
    root = tmp_path_factory.mktemp("crash") / "data"
    for name in ("orl_att40", "essex_faces94_19"):
        for ident in sorted(p for p in (shared_data / name).iterdir() if p.is_dir())[:6]:
            (root / ident.name).mkdir(parents=True)
            for f in sorted(ident.iterdir())[:8]:
                shutil.copy2(f, root / ident.name / f.name)
    return root


def command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "facesieve", "run", str(data), "--out", str(out), "--keep", "3", "--jobs", "2", "--quiet",
            "--no-report"]


def run_to_end(data: Path, out: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(command(data, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.perf_counter() - t0


def run_and_kill(data: Path, out: Path, delay: float) -> bool:
    """Start a run, SIGKILL it after `delay` seconds; True if it was killed before it finished."""
    proc = subprocess.Popen(command(data, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)  # the crash: the main process dies mid-write
        proc.wait()
        return True
    finally:
        try:  # then its orphaned pool workers, which hold no files open for writing
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def past_faces(out: Path) -> bool:
    """The faces and embed stages are complete (quality, which follows them, has begun)."""
    return any((out / ".facesieve").glob("quality-*/part-*.parquet"))


def stage_reached(out: Path) -> str:
    """The last stage a killed run left a trace of."""
    ws = out / ".facesieve"
    if (ws / "summary.json").exists() or (out / "manifest.csv").exists():
        return "apply"
    if (ws / "applied.json").exists():
        return "apply"
    if past_faces(out):
        return "quality/decide"
    if any(ws.glob("embed-*/part-*.parquet")):
        return "faces+embed"
    return "scan/faces" if (ws / "scan.parquet").exists() else "start"


def output_files(out: Path) -> dict[str, bytes]:
    """Every file of the output but the workspace, by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".facesieve" not in p.relative_to(out).parts
    }


def check_no_half_files(data: Path, out: Path) -> None:
    """Whatever a killed run left: every image it placed in the output is whole."""
    for rel, content in output_files(out).items():
        src = data / rel
        if src.is_file() and not rel.endswith(".tmp"):
            assert content == src.read_bytes(), f"{rel} in the output differs from its source"


@pytest.mark.heavy
def test_killed_runs_resume_to_the_same_result(dataset, tmp_path):
    ref = tmp_path / "ref"
    t_full = run_to_end(dataset, ref)
    t_tail = run_to_end(dataset, ref)  # nothing left to compute: startup, collect, decide, apply

    rng = random.Random(SEED)
    out = tmp_path / "crashed"
    killed, log = 0, []
    for _ in range(KILLS_EARLY + KILLS_LATE):
        # a random moment of what is left: the whole run until the faces are all in, then the tail
        delay = rng.uniform(0.1, 0.9) * (t_tail if past_faces(out) else t_full)
        killed += run_and_kill(dataset, out, delay)
        log.append((round(delay, 1), stage_reached(out)))
        check_no_half_files(dataset, out)
    print("kills (delay s, stage reached):", log)
    assert killed >= KILLS_EARLY + KILLS_LATE - 2, f"only {killed} runs were killed before they finished: {log}"
    run_to_end(dataset, out)

    assert (out / "manifest.csv").read_bytes() == (ref / "manifest.csv").read_bytes()
    got, want = output_files(out), output_files(ref)
    timing_free = {"summary.json"}  # holds run times and counts of files written this time
    assert sorted(got) == sorted(want)
    for rel in want:
        if rel not in timing_free:
            assert got[rel] == want[rel], f"{rel} differs from the uninterrupted run's"
    a, b = json.loads(got["summary.json"]), json.loads(want["summary.json"])
    for s in (a, b):
        for k in ("seconds", "stage_seconds", "output_files", "output"):
            s.pop(k, None)
        s["duplicate_check"].pop("pairs")  # pairs scored this time: a resumed run reads earlier ones from the workspace
        s["duplicate_check"].pop("background_checks")  # the same for the face-in-background test
    assert a == b
    # nothing half-written anywhere, the workspace included; kept images are their sources' bytes
    assert not [p for p in out.rglob("*.tmp")]
    kept = [r for r in got if (dataset / r).is_file()]
    assert kept and all(got[r] == (dataset / r).read_bytes() for r in kept)


def session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of every live (not zombie) process in session `sid`."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            state, session = fields[0], int(fields[3])
            if session == sid and state != "Z":
                found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
        except (OSError, ValueError):
            continue
    return found


def test_killed_run_leaves_no_process_behind(dataset, tmp_path):
    """SIGKILL on the run alone (not its process group): its fork server, resource tracker and pool
    workers must all go too, instead of holding their models in memory for good."""
    proc = subprocess.Popen(command(dataset, tmp_path / "out"), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # wait for the pool: the run, its fork server and tracker, and the two workers
        while len(session_processes(proc.pid)) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its workers could be seen"
        assert len(session_processes(proc.pid)) >= 5, session_processes(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_processes(proc.pid), f"processes of the killed run survived it: {session_processes(proc.pid)}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
