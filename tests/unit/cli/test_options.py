"""`facesieve run`'s options come from RunConfig's field metadata: every option field is on the command
line, its default is the dataclass's, and each flag lands in its field through RunConfig.from_namespace."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from facesieve.cli import build_parser
from facesieve.config import RunConfig

OPTION_FIELDS = [f for f in fields(RunConfig) if "cli" in f.metadata]

# one non-default value per option field, as typed on the command line, and the value the field must get
NON_DEFAULT = {
    "workspace": (["--workspace", "ws"], Path("ws")),
    "keep": (["-k", "3"], 3),
    "detector": (["--detector", "dlib-hog"], "dlib-hog"),
    "embedder": (["--embedder", "dlib"], "dlib"),
    "metric": (["--metric", "euclidean"], "euclidean"),
    "quality": (["--quality", "uniform"], "uniform"),
    "face_policy": (["--face-policy", "first"], "first"),
    "aligned": (["--aligned"], True),
    "mode": (["--mode", "hardlink"], "hardlink"),
    "layout": (["--layout", "flat"], "flat"),
    "jobs": (["-j", "2"], 2),
    "batch_size": (["--batch-size", "8"], 8),
    "engine": (["--engine", "ray"], "ray"),
    "ray_address": (["--ray-address", "auto"], "auto"),
    "max_exhaustive": (["--max-exhaustive", "10"], 10),
    "dedup": (["--no-dedup"], False),
    "near_dup_threshold": (["--near-dup-threshold", "0.9"], 0.9),
    "duplicates": (["--duplicates", "copies"], "copies"),
    "cross_id_threshold": (["--cross-id-threshold", "0.8"], 0.8),
    "overlap_threshold": (["--overlap-threshold", "0.7"], 0.7),
    "outliers": (["--no-outliers"], False),
    "drop_outliers": (["--drop-outliers"], True),
    "identities": (["--no-identity-check"], False),
    "empty_identities": (["--allow-empty-identities"], True),
    "relabel": (["--relabel"], True),
    "report": (["--no-report"], False),
}


def _config(*argv: str) -> RunConfig:
    return RunConfig.from_namespace(build_parser().parse_args(["run", *argv]))


def test_every_option_field_is_covered_here():
    assert {f.name for f in OPTION_FIELDS} - {"dataset", "out"} == set(NON_DEFAULT)


def test_run_defaults_are_the_dataclass_defaults():
    assert _config("photos", "--out", "cleaned") == RunConfig(dataset=Path("photos"), out=Path("cleaned"))


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_each_flag_sets_its_field_and_only_it(name):
    argv, value = NON_DEFAULT[name]
    got = _config("photos", "--out", "cleaned", *argv)
    assert getattr(got, name) == value
    base = RunConfig(dataset=Path("photos"), out=Path("cleaned"))
    changed = {f.name for f in fields(RunConfig) if getattr(got, f.name) != getattr(base, f.name)}
    assert changed == {name}


def test_run_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in OPTION_FIELDS:
        for flag in f.metadata["cli"]["flags"]:
            assert flag in text
    assert "(default: 2000000)" in text and "(default: shots)" in text and "(default: True)" not in text


def test_from_namespace_overrides_win():
    ns = build_parser().parse_args(["run", "photos", "--out", "cleaned", "--quality", "image"])
    assert RunConfig.from_namespace(ns, quality="uniform", report=False).quality == "uniform"
