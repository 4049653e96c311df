"""`facesieve quality` (score a dataset, select nothing) and `facesieve labels sdd-fiqa`
(SDD-FIQA pseudo-labels): thin shells over facesieve.quality.scoring."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facesieve.cli.options import add_option, common_flags, model_flags, usage
from facesieve.config import RunConfig
from facesieve.quality.registry import describe

EPILOG_QUALITY = """\
examples:
  facesieve quality photos/ --out scores.csv                    the offline default quality
  facesieve quality photos/ --out scores.csv --method image     image measures only (no embedder runs)
  facesieve quality photos/ --out scores.csv --method ers --ers-examples unrecognizable/
  facesieve quality photos/ --out scores.csv --method offline+sdd-fiqa   rank average of two methods

methods (a+b: the rank average of several; docs/quality.md):
{methods}

output: one row per file: path (relative to DATASET), identity, quality, then one column per
component of the method, then status and reason. Files without a face get an empty quality.
The work is cached in the workspace: a re-run (or `facesieve run` on the same workspace) reuses
every face and embedding already computed.
"""

EPILOG_LABELS = """\
examples:
  facesieve labels sdd-fiqa photos/ --out labels.txt
  facesieve labels sdd-fiqa photos/ --out labels.txt --embedder dlib --runs 12 --seed 0

output: one line per labelled face, `path<TAB>score`, path relative to DATASET, score in [0, 100]
(higher is better), as the SDD-FIQA authors' label files. Faces of one-image identities get no
label: they are listed in the summary, not an error.
"""


def register(subparsers) -> None:
    add_quality_parser(subparsers)
    add_labels_parser(subparsers)


def _shared(sp: argparse.ArgumentParser) -> None:
    model_flags(sp)
    add_option(sp, "layout")
    common_flags(sp)


def add_quality_parser(sub) -> None:
    sp = sub.add_parser(
        "quality",
        help="score every face of a dataset (no selection, nothing copied)",
        description="Score the faces of DATASET with a quality method and write one CSV row per file. "
        "The workspace defaults to <folder of --out>/.facesieve.",
        epilog=EPILOG_QUALITY.format(methods=describe()),
    )
    add_option(sp, "dataset")
    sp.add_argument("--out", "-o", type=Path, required=True, metavar="SCORES_CSV", help="CSV file to write")
    sp.add_argument("--method", "-m", default="offline", metavar="METHOD", help="quality method (see below)")
    sp.add_argument("--ers-examples", type=Path, default=None, metavar="DIR",
                    help="with --method ers: a folder of unrecognizable faces whose centre is f_UI "
                    "(default: found in the dataset's low-quality tail)")
    _shared(sp)
    sp.set_defaults(func=cmd_quality)


def add_labels_parser(sub) -> None:
    sp = sub.add_parser(
        "labels",
        help="quality pseudo-labels for training a quality regressor (SDD-FIQA)",
        description="Write quality pseudo-labels for every face of DATASET.",
        epilog=EPILOG_LABELS,
    )
    kinds = sp.add_subparsers(dest="labels_method", metavar="METHOD")
    sd = kinds.add_parser(
        "sdd-fiqa",
        help="SDD-FIQA: Wasserstein distance between a face's same- and other-identity similarities",
        description="SDD-FIQA pseudo-labels (Ou et al., CVPR 2021) from the run's embeddings: per face up to "
        "N_POS same-identity and N_NEG other-identity similarities, their 1-D Wasserstein distance, "
        "min-max to [0, 100] per run, mean of RUNS seeded runs. The workspace defaults to "
        "<folder of --out>/.facesieve.",
        epilog=EPILOG_LABELS,
    )
    add_option(sd, "dataset")
    sd.add_argument("--out", "-o", type=Path, required=True, metavar="LABELS_TXT", help="label file to write")
    sd.add_argument("--n-pos", type=int, default=24, help="same-identity comparisons per face")
    sd.add_argument("--n-neg", type=int, default=24, help="other-identity comparisons per face")
    sd.add_argument("--runs", type=int, default=12, help="seeded runs averaged")
    sd.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    _shared(sd)
    sd.set_defaults(func=cmd_labels_sdd)
    sp.set_defaults(func=lambda args: usage(sp, sys.stderr))


def _config(args, quality: str):
    from facesieve.quality.scoring import check_output

    check_output(args.dataset, args.out)
    out_dir = args.out.resolve().parent
    return RunConfig.from_namespace(args, out=out_dir, workspace=args.workspace or out_dir / ".facesieve",
                                    quality=quality, report=False)


def cmd_quality(args) -> int:
    from facesieve.errors import UsageError
    from facesieve.progress import Reporter
    from facesieve.quality.scoring import score_dataset
    from facesieve.workspace import atomic_write_csv

    method = args.method
    if args.ers_examples is not None:
        if method != "ers":
            raise UsageError("--ers-examples goes with --method ers")
        if not args.ers_examples.is_dir():
            raise UsageError(f"--ers-examples folder not found: {args.ers_examples}")
        method = f"ers:{args.ers_examples.resolve()}"
    config = _config(args, method)
    scored = score_dataset(config, Reporter(quiet=args.quiet or args.json))
    atomic_write_csv(args.out, scored.table)
    s = dict(scored.summary, output=str(args.out))
    if args.json:
        print(json.dumps(s, indent=2, default=str))
    else:
        rng = "" if s["quality_mean"] is None else (
            f", quality mean {s['quality_mean']:.3f} (min {s['quality_min']:.3f}, max {s['quality_max']:.3f})")
        others = ", ".join(f"{k} {v}" for k, v in sorted(s["by_status"].items()) if k != "ok")
        print(f"facesieve quality: {s['files']} files, {s['faces']} faces, {s['scored']} scored by {s['method']}{rng} "
              f"({s['seconds']:.1f} s)")
        if others:
            print(f"  not scored: {others}")
        if s.get("ers_source"):
            print(f"  ERS: f_UI from {s['ers_source']}")
        print(f"  output: {args.out}")
    return 0


def cmd_labels_sdd(args) -> int:
    from facesieve.progress import Reporter
    from facesieve.quality.labels import write_labels
    from facesieve.quality.scoring import sdd_fiqa_dataset

    config = _config(args, "sdd-fiqa")
    scored = sdd_fiqa_dataset(config, Reporter(quiet=args.quiet or args.json), n_pos=args.n_pos, n_neg=args.n_neg,
                              runs=args.runs, seed=args.seed)
    t = scored.table
    bad = t["path"].str.contains("[\t\n\r]", regex=True)
    n_lines = write_labels(args.out, t["path"][~bad].to_list(), t["quality"][~bad].to_numpy())
    s = dict(scored.summary, output=str(args.out), lines=n_lines, paths_with_tab_or_newline_skipped=int(bad.sum()))
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    print(f"facesieve labels sdd-fiqa: {n_lines} labels for {s['faces']} faces of {s['files']} files ({s['seconds']:.1f} s)")
    single = s["single_image_identities"]
    if single:
        shown = ", ".join(single[:10]) + (f", ... ({len(single)} in all)" if len(single) > 10 else "")
        print(f"  no label: {s['unlabelled_faces']} faces of one-image identities: {shown}")
    if s["no_face"]:
        print(f"  no face found (or unreadable): {s['no_face']} files")
    if s["paths_with_tab_or_newline_skipped"]:
        print(f"  skipped {s['paths_with_tab_or_newline_skipped']} paths holding a tab or a newline")
    print(f"  output: {args.out}")
    return 0
