"""`facesieve evaluate`: verification accuracy, identity similarity, EDC curves, model comparison.

A thin shell over facesieve.evaluate.api: it loads the dataset's embeddings through the
pipeline's stages (cached in a workspace, facesieve.evaluate.run), prints the figures and writes
the tables and plots. Numbers are reproducible for a given dataset, models, --pairs and --seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import textwrap
import uuid
from pathlib import Path

from facesieve.cli.options import add_device_option, add_option, common_flags, model_flags, usage
from facesieve.errors import UsageError

EPILOG = """\
examples:
  facesieve evaluate verify faces/ --pairs 3000 --seed 1       accuracy, EER, AUC, TAR@FAR
  facesieve evaluate similarity faces/ --out eval/              identity x identity matrix
  facesieve evaluate edc faces/ --quality image --quality uniform --out eval/
  facesieve evaluate compare faces/ --embedders sface,dlib --detectors yunet,dlib-hog

Every sub-command caches faces and embeddings in a workspace (default
$FACESIEVE_HOME/eval/<dataset>-<hash>, FACESIEVE_HOME defaulting to ~/.cache/facesieve), so a
second evaluation calls no model. Point --workspace at a run's <out>/.facesieve to reuse its work.
See docs/evaluate.md.
"""

EPILOG_VERIFY = """\
examples:
  facesieve evaluate verify faces/                               all genuine and impostor pairs
  facesieve evaluate verify faces/ --pairs 3000 --seed 1 --json  3000 pairs per side, as JSON
  facesieve evaluate verify faces/ --embedder dlib --metric euclidean --out eval/
  facesieve evaluate verify faces/ --workspace cleaned/.facesieve   reuse a `facesieve run`

figures:
  accuracy (mean+1std)  accuracy at face-similarity's threshold: mean + 1 std of the genuine distances
  accuracy (10-fold)    LFW protocol: threshold chosen on 9 folds, accuracy on the 10th, averaged
  EER, AUC              equal error rate and area under the ROC curve
  TAR@FAR               share of genuine pairs accepted where at most 1e-2 / 1e-3 of impostors are

Accuracies count pairs: with all pairs (the default) impostors far outnumber genuine pairs and
dominate them; --pairs N samples N per side for balanced, LFW-like accuracies. Images with no face
(or unreadable) are counted as failed and left out of every pair; none is silently dropped.

output (--out DIR):
  pairs.csv     path_a, path_b, genuine (1/0), distance
  roc.png       ROC curve (log FAR axis)
  dist.png      genuine / impostor distance histograms, thresholds marked
  failed.csv    images without an embedding and why (only when there are some)
  verify.json   the figures (as --json prints them)
"""

EPILOG_SIMILARITY = """\
examples:
  facesieve evaluate similarity faces/ --out eval/
  facesieve evaluate similarity faces/ --out eval/ --embedder dlib --detector dlib-hog

Diagonal: mean similarity of an identity's faces to each other (no self pairs): a dim cell is a
loose identity (mislabelled faces, mixed people). Off-diagonal: mean similarity across two
identities: a bright cell is two identities that look alike (or the same person twice).

output (--out DIR):
  matrix.csv    identity x identity mean cosine similarity, rows and columns in cluster order
  matrix.png    the heat map, labelled, ordered by average-linkage clustering
"""

EPILOG_EDC = """\
examples:
  facesieve evaluate edc faces/ --quality image --quality uniform
  facesieve evaluate edc faces/ --quality image,uniform --fmr 1e-2 --out eval/

The threshold is fixed from the impostor similarities at --fmr; then the lowest-quality share of
the genuine pairs (pair quality = the lower of the two faces' scores) is discarded and the FNMR of
the rest plotted against the share discarded. Lower is better; random discard stays flat. pAUC is
the area under the curve from 0 to --upper discarded; pauc_rel divides it by --upper x the FNMR at
0 discard, so random discard is about 1 and a perfect quality measure approaches 0.

output (--out DIR):
  edc.png         one curve per method and random discard (dashed)
  edc.csv         one row per method: pauc, pauc_rel, fnmr at 0/10/20/30% discard, n_unscored
  edc_curves.csv  every curve: method, discard, fnmr
"""

EPILOG_COMPARE = """\
examples:
  facesieve evaluate compare faces/ --embedders sface,dlib
  facesieve evaluate compare faces/ --embedders sface,dlib --detectors yunet,dlib-hog --pairs 3000 --out eval/

One row per detector x embedder combination with the figures of `evaluate verify`. A combination
that fails (unknown name, missing weights, no faces) shows its error in its row; the others still
run. Exit code 1 when any combination failed.

output (--out DIR):
  compare.csv   the table
"""

WORKSPACE_HELP = ("workspace folder caching faces and embeddings (default: $FACESIEVE_HOME/eval/<dataset>-<hash>, "
                  "i.e. ~/.cache/facesieve/eval/...; a run's <out>/.facesieve reuses its work)")


def register(sub) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="measure models and quality methods on a labelled dataset (verify, similarity, edc, compare)",
        description="Evaluate face models and quality methods on DATASET (one folder per identity).",
        epilog=EPILOG,
    )
    ev.set_defaults(func=lambda args: usage(ev))
    esub = ev.add_subparsers(dest="evaluate_command", metavar="SUB-COMMAND")

    sp = _sub(esub, "verify", "verification accuracy, EER, AUC and TAR@FAR of one model", EPILOG_VERIFY,
              "Pair the embedded faces of DATASET (genuine: same identity, impostor: different) and measure "
              "how well their distances separate the two.")
    _pair_flags(sp)
    sp.set_defaults(func=cmd_verify)

    sp = _sub(esub, "similarity", "identity x identity similarity matrix (CSV + heat map)", EPILOG_SIMILARITY,
              "Mean cosine similarity of the embedded faces within and across identities.", out_required=True)
    sp.add_argument("--top", type=int, default=10, metavar="N", help="closest identity pairs and loosest identities to print")
    sp.set_defaults(func=cmd_similarity)

    sp = _sub(esub, "edc", "Error-versus-Discard curves of quality methods", EPILOG_EDC,
              "Error-versus-Discard Characteristic (ISO/IEC 29794-1): how much the false non-match rate falls "
              "as the lowest-quality comparisons are discarded, per quality method, against random discard.")
    sp.add_argument("--quality", action="append", required=True, metavar="METHOD",
                    help="quality method (repeat, or comma-separate): any name `facesieve run --quality` takes, "
                         "e.g. uniform, image, offline, robustness, ers, sdd-fiqa")
    sp.add_argument("--fmr", type=float, default=1e-3, help="false match rate that fixes the threshold")
    sp.add_argument("--upper", type=float, default=0.3, help="pAUC up to this share discarded")
    _pair_flags(sp)
    sp.set_defaults(func=cmd_edc)

    sp = _sub(esub, "compare", "verification figures for several embedders x detectors", EPILOG_COMPARE,
              "Run `evaluate verify` for every detector x embedder combination and print one table.", models=False)
    sp.add_argument("--embedders", default="sface,dlib", metavar="A,B", help="comma-separated embedders")
    sp.add_argument("--detectors", default="yunet", metavar="X,Y", help="comma-separated detectors")
    _pair_flags(sp)
    sp.set_defaults(func=cmd_compare)


def _sub(esub, name: str, help_: str, epilog: str, description: str, *, out_required: bool = False,
         models: bool = True) -> argparse.ArgumentParser:
    sp = esub.add_parser(name, help=help_, description=textwrap.fill(description, 100), epilog=epilog)
    add_option(sp, "dataset")
    sp.add_argument("--out", "-o", type=Path, required=out_required, default=None, metavar="DIR",
                    help="folder for the tables and plots" + ("" if out_required else " (default: print only)"))
    # compare takes lists of models instead of --detector/--embedder; evaluation caches outside <out>/.facesieve
    model_flags(sp, models=models, workspace_help=WORKSPACE_HELP)
    add_device_option(sp)
    common_flags(sp)
    return sp


def _pair_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--pairs", type=int, default=None, metavar="N",
                    help="sample N genuine and N impostor pairs (default: all pairs)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the pair sample and the 10 folds (default: 0)")
    add_option(sp, "metric", help="distance: 1 - cosine, or Euclidean on the embedder's raw vectors")


# ------------------------------------------------------------------------------------ helpers
def _reporter(args):
    from facesieve.progress import Reporter

    return Reporter(quiet=args.quiet or args.json)


def _load(args, qualities=(), **overrides):
    from facesieve.evaluate.run import load_eval_set

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    options = {"detector": getattr(args, "detector", "yunet"), "embedder": getattr(args, "embedder", "sface"),
               "qualities": qualities, "face_policy": args.face_policy, "aligned": args.aligned, "jobs": args.jobs,
               "batch_size": args.batch_size, "workspace": args.workspace, "reporter": args._rep}
    options.update(overrides)
    return load_eval_set(args.dataset, **options)


def _check_args(args) -> None:
    """Refusals that need no model: bad numbers, an output inside the dataset."""
    args._rep = _reporter(args)
    if getattr(args, "pairs", None) is not None and args.pairs < 1:
        raise UsageError("--pairs must be at least 1")
    if not Path(args.dataset).is_dir():
        raise UsageError(f"dataset folder not found: {args.dataset}" if not Path(args.dataset).exists()
                         else f"dataset is not a folder: {args.dataset}")
    if args.out is not None:
        d, o = Path(args.dataset).resolve(), Path(args.out).resolve()
        if o == d or d in o.parents:
            raise UsageError(f"refusing to write the output inside the input dataset: {args.out}")
        if o.exists() and not o.is_dir():
            raise UsageError(f"output exists and is not a folder: {args.out}")


def _out_dir(args) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_csv(path: Path, df) -> Path:
    from facesieve.workspace import atomic_write_csv

    atomic_write_csv(path, df)
    return path


def _write_plot(path: Path, plot, *a, **k) -> Path:
    """Draw through a temporary .png in the same folder, then rename: never half a file."""
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.png")
    try:
        plot(tmp, *a, **k)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _jsonable(obj):
    """NaN / inf -> null (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _dumps(obj) -> str:
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False)


def _failed_line(counts: dict) -> str:
    if not counts["n_failed"]:
        return "  failed: none"
    reasons = ", ".join(f"{k} {v}" for k, v in counts["failed_by_reason"].items())
    return f"  failed: {counts['n_failed']} images without an embedding ({reasons}); left out of every pair"


def _faces_line(c: dict) -> str:
    extra = f", {c['n_fallback']} by whole-image fallback" if c.get("n_fallback") else ""
    return (f"  faces: {c['n_faces']} of {c['n_images']} images embedded{extra}, {c['n_identities']} identities "
            f"({c['detector']} + {c['embedder']})")


# ------------------------------------------------------------------------------------- verify
def cmd_verify(args) -> int:
    from facesieve.evaluate.api import pairs_table, roc_points, verify
    from facesieve.evaluate.verification import plot_distance_hist, plot_roc

    _check_args(args)
    es = _load(args)
    report, p = verify(es, n_pairs=args.pairs, seed=args.seed, metric=args.metric)
    report["workspace"] = str(es.workspace)
    written = []
    if args.out is not None:
        out = _out_dir(args)
        written.append(_write_csv(out / "pairs.csv", pairs_table(es, p)))
        far, tar = roc_points(p)
        written.append(_write_plot(out / "roc.png", plot_roc, far, tar, label=f"{es.detector} + {es.embedder}"))
        thresholds = {"mean+1std": report["threshold_mean_std"], "10-fold": report["threshold_10fold"]}
        written.append(_write_plot(out / "dist.png", plot_distance_hist, p.distance, p.genuine, thresholds))
        failed = es.failed()
        if len(failed):
            written.append(_write_csv(out / "failed.csv", failed))
        from facesieve.workspace import atomic_write_text

        atomic_write_text(out / "verify.json", _dumps(report) + "\n")
        written.append(out / "verify.json")
    if args.json:
        print(_dumps(report))
        return 0
    r = report
    tar = "   ".join(f"TAR@FAR={k} {v:.4f}" for k, v in r["tar_at_far"].items())
    sampled = "all pairs" if r["pairs"] == "all" else f"sampled, --pairs {r['pairs']} --seed {r['seed']}"
    lines = [
        f"facesieve evaluate verify: {es.dataset} ({args.metric} distance)",
        _faces_line(r),
        _failed_line(r),
        f"  pairs: {r['n_genuine']} genuine, {r['n_impostor']} impostor ({sampled})",
        f"  accuracy at mean+1std threshold  {r['accuracy_mean_std']:.4f}  (genuine when distance <= {r['threshold_mean_std']:.4f})",
        (f"  accuracy, 10-fold (LFW)          {r['accuracy_10fold']:.4f} +- {r['accuracy_10fold_std']:.4f}  "
         f"(mean threshold {r['threshold_10fold']:.4f})"),
        f"  EER {r['eer']:.4f}   AUC {r['auc']:.4f}   {tar}",
    ]
    if r["n_impostor"] > 2 * r["n_genuine"] or r["n_genuine"] > 2 * r["n_impostor"]:
        lines.append(f"  note: accuracies count pairs and the sides are unbalanced ({r['n_impostor']} vs {r['n_genuine']}); "
                     "use --pairs N for balanced sides")
    for f in r["failed"][:10]:
        lines.append(f"    failed: {f['path']} ({f['reason']})")
    if r["n_failed"] > 10:
        lines.append(f"    ... and {r['n_failed'] - 10} more" + (" (failed.csv)" if written else " (--out DIR writes failed.csv)"))
    if written:
        lines.append("  wrote: " + ", ".join(str(w) for w in written))
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------------- similarity
def cmd_similarity(args) -> int:
    import pandas as pd

    from facesieve.evaluate.api import similarity
    from facesieve.evaluate.similarity import plot_matrix

    _check_args(args)
    if args.top < 0:
        raise UsageError("--top must not be negative")
    es = _load(args)
    res = similarity(es, top=args.top)
    out = _out_dir(args)
    matrix = pd.DataFrame(res.matrix, index=pd.Index(res.labels, name="identity"), columns=res.labels)
    from facesieve.workspace import atomic_write_text

    atomic_write_text(out / "matrix.csv", matrix.to_csv())
    written = [out / "matrix.csv", _write_plot(out / "matrix.png", plot_matrix, res.labels, res.matrix,
                                                title=f"{es.dataset.name}: identity similarity ({es.embedder})")]
    c = res.counts
    c["workspace"] = str(es.workspace)
    c["outputs"] = [str(w) for w in written]
    if args.json:
        print(_dumps(c))
        return 0
    lines = [f"facesieve evaluate similarity: {es.dataset}", _faces_line(c), _failed_line(c),
             f"  mean similarity within identities {c['mean_within']:.4f}, between identities {c['mean_between']:.4f}"]
    if c["identities_without_faces"]:
        lines.append(f"  identities with no embedded face (not in the matrix): {', '.join(c['identities_without_faces'])}")
    if c["closest_pairs"]:
        lines.append("  closest identity pairs: " + ", ".join(f"{p['a']}~{p['b']} {p['similarity']:.3f}" for p in c["closest_pairs"]))
    if c["loosest_identities"]:
        lines.append("  loosest identities: " + ", ".join(f"{p['identity']} {p['similarity']:.3f}" for p in c["loosest_identities"]))
    lines.append("  wrote: " + ", ".join(str(w) for w in written))
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------- edc
def cmd_edc(args) -> int:
    from facesieve.evaluate.api import edc, edc_curves_table
    from facesieve.evaluate.edc import plot_edc

    _check_args(args)
    methods = list(dict.fromkeys(m.strip() for q in args.quality for m in q.split(",") if m.strip()))
    if not methods:
        raise UsageError("--quality needs at least one method name")
    if "random" in methods:
        raise UsageError("'random' is the baseline every EDC shows already; name quality methods only")
    if not 0.0 <= args.fmr < 1.0:
        raise UsageError(f"--fmr must be in [0, 1), got {args.fmr}")
    if not 0.0 < args.upper < 0.95:
        raise UsageError(f"--upper must be in (0, 0.95), got {args.upper}")
    es = _load(args, qualities=methods)
    res = edc(es, methods, fmr=args.fmr, upper=args.upper, n_pairs=args.pairs, seed=args.seed, metric=args.metric)
    written = []
    if args.out is not None:
        out = _out_dir(args)
        written.append(_write_csv(out / "edc.csv", res.table))
        written.append(_write_csv(out / "edc_curves.csv", edc_curves_table(res)))
        written.append(_write_plot(out / "edc.png", plot_edc, res.curves, upper=args.upper,
                                   title=f"{es.dataset.name}: EDC at FMR {args.fmr:g} ({es.embedder})"))
    c = res.counts
    summary = {**c, "fmr": res.fmr, "threshold": res.threshold, "upper": res.upper, "workspace": str(es.workspace),
               "methods": res.table.to_dict(orient="records")}
    if written:
        summary["outputs"] = [str(w) for w in written]
    if args.json:
        print(_dumps(summary))
        return 0
    sampled = "all pairs" if c["pairs"] == "all" else f"sampled, --pairs {c['pairs']} --seed {c['seed']}"
    lines = [f"facesieve evaluate edc: {es.dataset} ({args.metric} distance)", _faces_line(c), _failed_line(c),
             (f"  pairs: {c['n_genuine']} genuine, {c['n_impostor']} impostor ({sampled}); threshold at FMR {res.fmr:g}: "
              f"distance <= {res.threshold:.4f} (realised FMR {c['realised_fmr']:.2g})"),
             f"  pAUC up to {res.upper:g} discarded (lower is better; pauc_rel: random = 1):"]
    table = res.table.copy()
    lines.append("    " + table.to_string(index=False, float_format=lambda v: f"{v:.4f}").replace("\n", "\n    "))
    if table.loc[table["method"] == "random", "fnmr_0"].iloc[0] == 0:
        lines.append("  note: no genuine comparison fails at this threshold, so discarding cannot lower the FNMR and "
                     "the EDC cannot rank quality methods on this dataset")
    if c["n_impostor"] * res.fmr < 1:
        lines.append(f"  note: {c['n_impostor']} impostor pairs cannot resolve FMR {res.fmr:g}; the threshold is the "
                     "largest impostor similarity")
    if written:
        lines.append("  wrote: " + ", ".join(str(w) for w in written))
    print("\n".join(lines))
    return 0


# ------------------------------------------------------------------------------------ compare
def split_models(text: str) -> list[str]:
    """Comma-separated model strings; commas inside NAME:{json options} do not split."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _with_device(model: str, device: str) -> str:
    """--device folded into one model string; a string that does not parse is left for its row to report."""
    from facesieve.errors import FacesieveError
    from facesieve.models.spec import merge_spec

    try:
        return merge_spec(model, device=device)
    except FacesieveError:
        return model


def cmd_compare(args) -> int:
    from facesieve.evaluate.api import compare

    _check_args(args)
    embedders = [_with_device(e, args.model_device) for e in split_models(args.embedders)]
    detectors = [_with_device(d, args.model_device) for d in split_models(args.detectors)]
    if not embedders or not detectors:
        raise UsageError("--embedders and --detectors need at least one name each")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    rep = args._rep

    def on_row(row: dict) -> None:
        what = f"{row['detector']} + {row['embedder']}"
        if row.get("error"):
            rep.warn(f"{what}: {row['error']}")
        else:
            rep.info(f"{what}: EER {row['eer']:.4f}, 10-fold accuracy {row['accuracy_10fold']:.4f} ({row['seconds']:.0f} s)")

    table = compare(args.dataset, detectors, embedders, n_pairs=args.pairs, seed=args.seed, metric=args.metric,
                    on_row=on_row, face_policy=args.face_policy, aligned=args.aligned, jobs=args.jobs,
                    batch_size=args.batch_size, workspace=args.workspace, reporter=rep)
    written = []
    if args.out is not None:
        written.append(_write_csv(_out_dir(args) / "compare.csv", table))
    failed = int((table["error"].fillna("") != "").sum())
    if args.json:
        rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        print(_dumps({"dataset": str(args.dataset), "metric": args.metric,
                      "pairs": "all" if args.pairs is None else args.pairs, "seed": args.seed, "rows": rows,
                      "n_failed_combinations": failed}))
        return 1 if failed else 0
    shown = table.drop(columns=["threshold_mean_std", "threshold_10fold"]).rename(columns={
        "accuracy_mean_std": "acc_mean+1std", "accuracy_10fold": "acc_10fold", "tar_far_1e-02": "tar@1e-2",
        "tar_far_1e-03": "tar@1e-3"})
    shown["error"] = [e if len(e) <= 70 else e[:67] + "..." for e in shown["error"].fillna("")]  # whole in compare.csv / --json
    print(f"facesieve evaluate compare: {args.dataset} ({args.metric} distance, "
          f"{'all pairs' if args.pairs is None else f'--pairs {args.pairs} --seed {args.seed}'})")
    counts = {c: (lambda v: "-" if math.isnan(v) else f"{int(v)}") for c in shown.columns if c.startswith("n_")}
    print(shown.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4f}",
                          formatters={**counts, "seconds": lambda v: "-" if math.isnan(v) else f"{v:.1f}"}))
    if written:
        print("wrote: " + ", ".join(str(w) for w in written))
    return 1 if failed else 0
