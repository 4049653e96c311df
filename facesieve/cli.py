"""The `facesieve` command: a thin shell over the Python API.

Errors a user can act on are printed as one line on stderr (traceback only with --debug);
exit code 2 for refused requests and bad usage, 1 for other failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from facesieve import __version__
from facesieve.errors import FacesieveError

EPILOG_MAIN = """\
examples:
  facesieve run photos/ --out cleaned --keep 10        clean a dataset, keep 10 faces per identity
  facesieve run photos/ --out cleaned --detector dlib-hog --embedder dlib
  facesieve run --help                                 every option of one command

Each command caches its work in <out>/.facesieve: re-running it only computes what changed.
"""

EPILOG_RUN = """\
examples:
  facesieve run photos/ --out cleaned
  facesieve run photos/ --out cleaned --keep 5 --quality image --mode hardlink
  facesieve run frames/ --out cleaned --duplicates copies   keep near-identical shots (video frames, bursts)
  facesieve run seed/ --out golden --detector dlib-hog --embedder dlib \\
      --metric euclidean --quality uniform --keep 3 --face-policy first

output:
  cleaned/<identity>/...        the kept images (copies, or links with --mode)
  cleaned/manifest.csv          one row per input file: path,identity,action,reason,quality,...
  cleaned/<identity>/best_encoding.npy   mean embedding of the kept faces
  cleaned/summary.json          the summary printed at the end
  cleaned/skipped.csv           paths that have no manifest row (hidden, empty or unreadable folders, ...)
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has a meaningful one) and keeps the examples' line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facesieve",
        description="Clean face-recognition training datasets: find duplicates and poor faces, "
        "keep the best subset per identity.",
        epilog=EPILOG_MAIN,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"facesieve {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_run_parser(sub)
    for register in _extra_commands():
        register(sub)
    return p


def common_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    sp.add_argument("--debug", action="store_true", help="show tracebacks")


def model_flags(sp: argparse.ArgumentParser) -> None:
    from facesieve.config import DETECTORS, EMBEDDERS

    from facesieve.models.spec import add_model_options

    sp.add_argument("--detector", default="yunet", metavar="NAME[:WEIGHTS]",
                    help=f"face detector: {', '.join(DETECTORS)}")
    sp.add_argument("--embedder", default="sface", metavar="NAME[:WEIGHTS]",
                    help=f"face embedder: {', '.join(EMBEDDERS)} (`facesieve models list`)")
    add_model_options(sp)
    sp.add_argument("--face-policy", default="central", choices=("central", "first"),
                    help="which face of a multi-face image: nearest the centre weighted by size, or the detector's first")
    sp.add_argument("--aligned", action="store_true", help="inputs are already aligned 112x112 crops: skip detection")
    sp.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: all cores)")
    sp.add_argument("--batch-size", type=int, default=16, help="faces per inference batch (and images per worker task)")
    sp.add_argument("--workspace", type=Path, default=None, help="workspace folder (default: <out>/.facesieve)")


def add_run_parser(sub) -> None:
    from facesieve.config import METRICS, MODES

    sp = sub.add_parser(
        "run",
        help="scan, detect, embed, score, select and write the cleaned dataset",
        description="Clean DATASET (one folder per identity) into OUT: every file gets a decision in "
        "OUT/manifest.csv, kept images are copied to OUT/<identity>/. The input is never modified.",
        epilog=EPILOG_RUN,
        formatter_class=HelpFormatter,
    )
    sp.add_argument("dataset", type=Path, metavar="DATASET", help="folder with one sub-folder per identity")
    sp.add_argument("--out", "-o", type=Path, required=True, metavar="CLEANED", help="output folder (new, or a previous facesieve output)")
    sp.add_argument("--keep", "-k", type=int, default=None, metavar="K",
                    help="keep the K most representative faces per identity (default: keep all that pass)")
    model_flags(sp)
    from facesieve.models.spec import add_device_option

    add_device_option(sp)
    sp.add_argument("--metric", default="cosine", choices=METRICS, help="distance between embeddings (euclidean: raw vectors)")
    from facesieve.quality.registry import help_text

    sp.add_argument("--quality", default="offline", metavar="METHOD", help="quality method: " + help_text())
    sp.add_argument("--mode", default="copy", choices=MODES, help="how kept files are placed in the output")
    sp.add_argument("--layout", default="folders", choices=("folders", "flat"),
                    help="identity from the top-level folder, or none (one flat group)")
    sp.add_argument("--max-exhaustive", type=int, default=2_000_000,
                    help="largest number of K-subsets searched exhaustively; beyond it a local search is used")
    g = sp.add_argument_group("duplicates and outliers")
    g.add_argument("--no-dedup", action="store_true", help="skip the exact, near-duplicate and cross-identity passes")
    g.add_argument("--near-dup-threshold", type=float, default=None, metavar="T",
                   help="cosine at or above which two faces of one identity are grouped on their embeddings alone, without the "
                   "face-crop comparison (default: 1.0, only identical vectors, for calibrated embedders)")
    g.add_argument("--duplicates", default="shots", choices=("exact", "copies", "shots", "off"),
                   help="what is grouped within an identity, keeping the best face of each group: exact = same bytes or "
                   "pixels only; copies = also the same photo edited (re-encoded, resized, cropped, flipped, re-toned, "
                   "grey, rotated, framed, captioned, stretched); shots = also near-identical shots of one moment "
                   "(video frames, bursts: reason near_identical_shot); off = none (docs/thresholds.md)")
    g.add_argument("--no-pixel-check", action="store_true", help=argparse.SUPPRESS)  # removed: a clear error says what replaced it
    g.add_argument("--pixel-residual", type=float, default=None, help=argparse.SUPPRESS)
    g.add_argument("--cross-id-threshold", type=float, default=None, metavar="T",
                   help="cosine at or above which faces of two identities are one photo filed twice: kept where the face "
                   "fits, else both to review (default: calibrated)")
    g.add_argument("--overlap-threshold", type=float, default=None, metavar="T",
                   help="cosine of two identities' mean faces at or above which they are listed in identity_overlaps.csv (default: calibrated)")
    g.add_argument("--no-outliers", action="store_true", help="skip the per-face outlier pass (select/outliers.py)")
    g.add_argument("--drop-outliers", action="store_true", help="remove outliers and mislabeled faces instead of marking them for review")
    g.add_argument("--no-identity-check", action="store_true",
                   help="skip the identity pass: folders holding two people, and a photo filed under several identities "
                   "kept where its face fits (without it such copies all go to review)")
    g.add_argument("--allow-empty-identities", action="store_true",
                   help="let duplicate and identity decisions remove every face of an identity (default: an identity "
                   "that would be emptied keeps the faces they took, with the decision in `detail`)")
    g.add_argument("--relabel", action="store_true",
                   help="also copy each face found `mislabeled` into the identity it belongs to (manifest column "
                   "`belongs_to`) in the output; the input is never touched (default: off)")
    e = sp.add_argument_group("engine (docs/scale.md)")
    e.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local: a process pool on this machine (--jobs); ray: Ray Data on a Ray cluster (pip install 'facesieve[ray]')")
    e.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join, e.g. ray://head:10001 or auto (default: a running one, else a local instance)")
    sp.add_argument("--no-report", action="store_true", help="do not write OUT/report.html (the HTML report)")
    common_flags(sp)
    sp.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    if args.no_pixel_check or args.pixel_residual is not None:
        flag = "--no-pixel-check" if args.no_pixel_check else "--pixel-residual"
        print(f"facesieve: error: {flag} was removed: the pixel check is replaced by a face-crop comparison that "
              "needs no setting. Use --duplicates copies (same photos only, near-identical shots kept), "
              "--duplicates shots (the default: shots grouped too) or --duplicates exact.", file=sys.stderr)
        return 2
    from facesieve.config import RunConfig
    from facesieve.pipeline import run
    from facesieve.progress import Reporter

    config = RunConfig(
        dataset=args.dataset,
        out=args.out,
        workspace=args.workspace,
        keep=args.keep,
        detector=args.detector,
        embedder=args.embedder,
        metric=args.metric,
        quality=args.quality,
        face_policy=args.face_policy,
        aligned=args.aligned,
        mode=args.mode,
        layout=args.layout,
        jobs=args.jobs,
        batch_size=args.batch_size,
        max_exhaustive=args.max_exhaustive,
        engine=args.engine,
        ray_address=args.ray_address,
        dedup=not args.no_dedup,
        near_dup_threshold=args.near_dup_threshold,
        duplicates=args.duplicates,
        cross_id_threshold=args.cross_id_threshold,
        overlap_threshold=args.overlap_threshold,
        outliers=not args.no_outliers,
        drop_outliers=args.drop_outliers,
        identities=not args.no_identity_check,
        empty_identities=args.allow_empty_identities,
        relabel=args.relabel,
        report=not args.no_report,
    )
    rep = Reporter(quiet=args.quiet or args.json)
    result = run(config, rep)
    print_summary(result.summary, as_json=args.json)
    return 0


def print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    s = summary
    lines = [
        f"facesieve: {s['files']} files, {s['images']} images, {s['faces']} faces in {s['identities']} identities "
        f"({s['seconds']:.1f} s)",
        f"  kept {s['kept']}, removed {s['removed']}, review {s['review']}, errors {s['errors']}, no face {s['no_face']}, "
        f"ignored {s.get('ignored', 0)}",
    ]
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["by_reason"].items()))
    if reasons:
        lines.append(f"  reasons: {reasons}")
    if s.get("skipped_paths"):
        lines.append(f"  paths without a row ({s['output']}/skipped.csv): "
                     + ", ".join(f"{k} {v}" for k, v in s["skipped_paths"].items()))
    if s.get("selection_methods"):
        lines.append("  selection: " + ", ".join(f"{k} {v}" for k, v in s["selection_methods"].items()))
    pix = s.get("duplicate_check") or {}
    if pix.get("pairs"):
        lines.append(f"  duplicate check: {pix['pairs']} face pairs scored, {pix['copies']} grouped")
    lost = s.get("identities_lost_over_half") or []
    if lost or s.get("identities_emptied"):
        names = ", ".join(f"{x['identity']} ({x['not_kept']}/{x['files']})" for x in lost[:5]) + (" ..." if len(lost) > 5 else "")
        lines.append(f"  identities emptied: {s.get('identities_emptied', 0)}; more than half not kept: {len(lost)}"
                     + (f" ({names})" if names else ""))
    if s.get("identities_kept_from_emptying"):
        lines.append(f"  kept so as not to empty them: {', '.join(s['identities_kept_from_emptying'][:5])}")
    dev = s.get("devices") or {}
    if dev:
        lines.append(f"  ran on: detector {dev.get('detector')}, embedder {dev.get('embedder')}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in s["stage_seconds"].items())
    lines.append(f"  stages: {stages}")
    lines.append(f"  output: {s['output']} (manifest.csv)")
    print("\n".join(lines))


def _extra_commands() -> list[Callable]:
    """Sub-commands that live in their own modules (imported lazily by their handlers)."""
    registers = []
    for mod, fn in (
        ("facesieve.cli_models", "register"),
        ("facesieve.cli_quality", "register"),
        ("facesieve.cli_evaluate", "register"),
        ("facesieve.cli_serve", "register"),
        ("facesieve.cli_video", "register"),
        ("facesieve.cli_train", "register"),
    ):
        try:
            module = __import__(mod, fromlist=[fn])
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        registers.append(getattr(module, fn))
    return registers


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from facesieve.models.spec import fold_model_args

    try:
        fold_model_args(args)  # --detector-weights/--embedder-weights/--device/--det-threshold into the model strings
    except FacesieveError as e:
        print(f"facesieve: error: {e}", file=sys.stderr)
        return e.exit_code
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FacesieveError as e:
        if getattr(args, "debug", False):
            raise
        print(f"facesieve: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("facesieve: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: one line, and how to see more
        if getattr(args, "debug", False):
            raise
        print(f"facesieve: error: {type(e).__name__}: {e} (re-run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
