"""The public API (`import facesieve`): cheap to import, and usable from a plain script or a notebook
with no `if __name__ == "__main__"` guard, on the repository's sample (sample/faces)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample" / "faces"
HEAVY = ("numpy", "pandas", "cv2", "onnxruntime", "torch")


def _python(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """This checkout's facesieve in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                          timeout=600, check=False)


def test_import_loads_no_numerical_library(tmp_path):
    code = ("import sys, facesieve, facesieve.evaluate; facesieve.run; facesieve.prepare; facesieve.quality_scores; "
            f"facesieve.evaluate.verify; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = _python(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    import facesieve

    assert set(facesieve.__all__) == {"__version__", *facesieve._LAZY, *facesieve._SUBMODULES}


# the user's code, exactly as one would write it: no __main__ guard. Each execution of the script body
# appends a line to runs.txt, so a worker that re-ran the script would show as a second line.
SCRIPT = """
import json, facesieve
with open("runs.txt", "a") as f:
    f.write("ran\\n")
result = facesieve.run({sample!r}, out="cleaned", keep=3, jobs=2)
json.dump({{"kept": result.summary["kept"], "faces": result.summary["faces"]}}, open("result.json", "w"))
"""


def _check_sample_run(folder: Path, done: subprocess.CompletedProcess) -> pd.DataFrame:
    assert done.returncode == 0, done.stderr[-3000:]
    assert (folder / "runs.txt").read_text() == "ran\n"  # the workers did not execute the script again
    assert json.loads((folder / "result.json").read_text()) == {"kept": 12, "faces": 27}
    m = pd.read_csv(folder / "cleaned" / "manifest.csv").set_index("path")
    assert m[m["action"] == "keep"].groupby("identity").size().to_dict() == {"s01": 3, "s02": 3, "s03": 3, "s04": 3}
    dups = m[m["reason"] == "near_duplicate"]
    assert sorted(zip(dups.index, dups["duplicate_of"])) in (  # the planted copies (sample/README.md), either way round
        [(a, b) for a, b in pairs] for pairs in _copy_orientations())
    return m


def _copy_orientations():
    planted = [("s01/03.pgm", "s01/03_reposted.jpg"), ("s03/05.pgm", "s03/05_flipped_large.jpg")]
    for flip in range(4):
        yield sorted((b, a) if flip >> i & 1 else (a, b) for i, (a, b) in enumerate(planted))


@pytest.fixture(scope="module")
def script_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("script")
    (folder / "clean.py").write_text(SCRIPT.format(sample=str(SAMPLE)))
    done = _python(["clean.py"], folder)
    _check_sample_run(folder, done)
    return folder


def test_plain_script_without_main_guard(script_run):
    assert (script_run / "cleaned" / "report.html").is_file()


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_code_with_no_script_file(tmp_path, how):
    """Code given on the command line has a __main__ with no file, as in a notebook; code read from
    stdin has one named "<stdin>" that multiprocessing would try to run again. Workers start in both."""
    code = SCRIPT.format(sample=str(SAMPLE))
    done = _python(["-c", code], tmp_path) if how == "-c" else _python(["-"], tmp_path, stdin=code)
    _check_sample_run(tmp_path, done)


def test_api_matches_the_cli_on_the_runs_workspace(script_run, tmp_path):
    """prepare, quality_scores and evaluate.verify reuse a run's workspace and give what the CLI gives."""
    import facesieve

    ws = script_run / "cleaned" / ".facesieve"
    es = facesieve.prepare(SAMPLE, workspace=ws, qualities=["image"], jobs=1)
    sizes = pd.Series(es.identities).value_counts()
    assert es.unit.shape == (27, 128) and int(es.valid.sum()) == 27
    assert abs(float(es.unit[0] @ es.unit[0]) - 1) < 1e-5
    assert list(es.quality) == ["image"] and pd.Series(es.quality["image"]).notna().all()

    q = facesieve.quality_scores(SAMPLE, method="image", workspace=ws, jobs=1)
    done = _python(["-m", "facesieve", "quality", str(SAMPLE), "--out", str(tmp_path / "q.csv"), "--method", "image",
                    "--workspace", str(ws), "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    cli = pd.read_csv(tmp_path / "q.csv")
    pd.testing.assert_series_equal(q.set_index("path")["quality"].sort_index(), cli.set_index("path")["quality"].sort_index(),
                                   check_exact=False, atol=1e-6)
    assert q.attrs["summary"]["scored"] == 27
    # the same per-image scores as prepare's
    by_path = dict(zip(es.paths, es.quality["image"]))
    assert max(abs(by_path[p] - v) for p, v in zip(q["path"], q["quality"])) < 1e-6

    report = facesieve.evaluate.verify(SAMPLE, workspace=ws, jobs=1)
    assert report["n_faces"] == 27
    assert report["n_genuine"] == int((sizes * (sizes - 1) // 2).sum())
    assert report["n_impostor"] == 27 * 26 // 2 - report["n_genuine"]
    assert 0 <= report["eer"] < 0.5 and report["auc"] > 0.5
    assert facesieve.evaluate.verify(es)["eer"] == report["eer"]  # an EvalSet in, the same figures


def test_run_refuses_an_unknown_option(tmp_path):
    import facesieve

    with pytest.raises(TypeError, match="kep"):
        facesieve.run(SAMPLE, out=tmp_path / "out", kep=3)
    assert not (tmp_path / "out").exists()


def test_library_workers_get_no_main_module_but_other_processes_do(tmp_path):
    """Only the starts of facesieve's own pool workers lose the main module; a process the caller
    starts itself (or a pool running a function of the caller's __main__) gets multiprocessing's data."""
    from multiprocessing import spawn

    from facesieve import parallel

    parallel._context()  # installs the wrapper
    assert spawn.get_preparation_data is parallel._preparation_data
    ours = textwrap.dedent("""
        import sys, types
        from facesieve import parallel
        parallel._context()
        plain = parallel._preparation_data("x")
        parallel._launching.library_only = True
        library = parallel._preparation_data("x")
        print("init_main_from_path" in plain, "init_main_from_path" in library)
        print(parallel._context(needs_main=True).get_start_method(), type(parallel._context()).__name__)
    """)
    (tmp_path / "prep.py").write_text(ours)
    done = _python(["prep.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "forkserver", "_LibraryContext"]


GUARDED = """
from facesieve.parallel import ordered_map

def square(x):
    return x * x

if __name__ == "__main__":
    print(list(ordered_map(square, range(6), jobs=2, chunk=1)))
"""


def test_a_function_of_the_callers_main_still_runs_on_the_pool(tmp_path):
    """bench scripts map functions they define themselves: their workers load the script (guarded)."""
    (tmp_path / "bench_like.py").write_text(GUARDED)
    done = _python(["bench_like.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 4, 9, 16, 25]"


def test_prepare_stays_the_function_once_the_pipeline_is_imported():
    """facesieve/preparation.py is not named prepare.py: a submodule `facesieve.prepare` would replace
    the public function on the package the moment the pipeline imported it."""
    import facesieve
    import facesieve.api
    import facesieve.pipeline  # noqa: F401 - imports the stages module

    assert facesieve.prepare is facesieve.api.prepare
