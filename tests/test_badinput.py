"""The bad-input run: every odd file gets one manifest row with its reason, and the input is untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from facesieve.cli import main
from tests.badset import CASES, build_bad_dataset

ERROR_KINDS = {"empty_file", "truncated", "not_an_image", "outside_identity_folder", "not_an_image_extension"}


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bad_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    data = root / "data"
    kinds = build_bad_dataset(data, shared_data)
    before = digest(data)
    out = root / "out"
    code = main(["run", str(data), "--out", str(out), "--keep", "2", "--quiet"])
    return data, out, kinds, before, code


def test_exit_zero_and_input_untouched(bad_run):
    data, out, kinds, before, code = bad_run
    assert code == 0
    assert digest(data) == before


def test_one_row_per_file_with_reason(bad_run):
    data, out, kinds, before, code = bad_run
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert m["path"].is_unique
    assert set(m["path"]) == set(kinds)
    m = m.set_index("path")
    for rel, kind in kinds.items():
        row = m.loc[rel]
        if kind in ERROR_KINDS:
            assert (row["action"], row["reason"]) == ("error", kind), rel
        elif kind == "no_face":
            assert (row["action"], row["reason"]) == ("remove", "no_face"), rel
        else:
            assert row["action"] in ("keep", "remove", "review"), (rel, row["action"], row["reason"])
            assert row["reason"] in ("selected", "not_selected", "too_few", "near_duplicate", "exact_duplicate",
                                     "outlier", "cross_identity_duplicate", "mislabeled", "ambiguous_identity"), (rel, row["reason"])
            if row["reason"].endswith("duplicate"):
                assert row["duplicate_of"] in kinds
            assert row["status"] == "ok", rel


def test_odd_but_valid_images_have_faces(bad_run):
    data, out, kinds, before, code = bad_run
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False).set_index("path")
    for case in ("upper_ext", "webp_as_jpg", "exif6", "exif8", "pgm", "grey16", "rgba", "rgb16", "unicode", "nested", "single"):
        assert m.loc[CASES[case], "status"] == "ok", case
        assert m.loc[CASES[case], "quality"] != "", case


def test_output_layout(bad_run):
    data, out, kinds, before, code = bad_run
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    kept = m[m["action"] == "keep"]
    for rel in kept["path"]:
        assert (out / rel).read_bytes() == (data / rel).read_bytes()
    # the one-image identity keeps its image, with the reason saying why
    single = m.set_index("path").loc[CASES["single"]]
    assert (single["action"], single["reason"]) == ("keep", "too_few")
    # nested sub-folders belong to their top identity
    assert m.set_index("path").loc[CASES["nested"], "identity"] == "seed_person1"
    assert not (out / "empty_person").exists()
