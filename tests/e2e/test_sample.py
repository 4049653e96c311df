"""The quick-start sample in the repository (sample/faces): the README's first command runs on it, and
the run finds the three problems planted there (sample/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

SAMPLE = Path(__file__).resolve().parents[2] / "sample" / "faces"


def test_quick_start_finds_the_planted_problems(tmp_path):
    before = sorted((p.relative_to(SAMPLE), p.stat().st_size) for p in SAMPLE.rglob("*") if p.is_file())
    out = tmp_path / "cleaned"
    done = subprocess.run([sys.executable, "-m", "facesieve", "run", str(SAMPLE), "--out", str(out), "--keep", "3"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    m = pd.read_csv(out / "manifest.csv").set_index("path")
    assert len(m) == len(before) == 27
    for copy, source in (("s01/03_reposted.jpg", "s01/03.pgm"), ("s03/05_flipped_large.jpg", "s03/05.pgm")):
        pair = m.loc[[copy, source]]
        dup = pair[pair["reason"].isin(["near_duplicate", "exact_duplicate"])]
        assert len(dup) == 1, pair[["action", "reason"]]  # one of the two, in favour of the other
        assert dup["duplicate_of"].item() == ({copy, source} - {dup.index[0]}).pop()
    misfiled = m.loc["s02/misfiled_s05_02.pgm"]
    assert misfiled["action"] in ("review", "remove")
    assert pd.isna(misfiled["belongs_to"])  # ORL subject 5 is no identity of the sample: given to none
    kept = m[m["action"] == "keep"].groupby("identity").size()
    assert kept.to_dict() == {"s01": 3, "s02": 3, "s03": 3, "s04": 3}
    after = sorted((p.relative_to(SAMPLE), p.stat().st_size) for p in SAMPLE.rglob("*") if p.is_file())
    assert after == before  # the input is never touched
