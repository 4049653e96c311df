"""`facesieve run`: clean a dataset. Its options are RunConfig's fields (facesieve/config.py)."""

from __future__ import annotations

import argparse
import json
import sys

from facesieve.cli.options import add_device_option, add_options, common_flags, model_flags
from facesieve.config import RunConfig

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


def register(sub) -> None:
    sp = sub.add_parser(
        "run",
        help="scan, detect, embed, score, select and write the cleaned dataset",
        description="Clean DATASET (one folder per identity) into OUT: every file gets a decision in "
        "OUT/manifest.csv, kept images are copied to OUT/<identity>/. The input is never modified.",
        epilog=EPILOG_RUN,
    )
    add_options(sp, "dataset", "out", "keep")
    model_flags(sp)
    add_device_option(sp)
    add_options(sp)  # every other RunConfig option, in the dataclass's order
    sp.add_argument("--no-pixel-check", action="store_true", help=argparse.SUPPRESS)  # removed: a clear error says what replaced it
    sp.add_argument("--pixel-residual", type=float, default=None, help=argparse.SUPPRESS)
    common_flags(sp)
    sp.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    if args.no_pixel_check or args.pixel_residual is not None:
        flag = "--no-pixel-check" if args.no_pixel_check else "--pixel-residual"
        print(f"facesieve: error: {flag} was removed: the pixel check is replaced by a face-crop comparison that "
              "needs no setting. Use --duplicates copies (same photos only, near-identical shots kept), "
              "--duplicates shots (the default: shots grouped too) or --duplicates exact.", file=sys.stderr)
        return 2
    from facesieve.pipeline import run
    from facesieve.progress import Reporter

    result = run(RunConfig.from_namespace(args), Reporter(quiet=args.quiet or args.json))
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
        lines.append(f"  duplicate check: {pix['pairs']} face pairs scored, {pix['copies']} grouped"
                     + (f", {pix['background_checks']} checked by keypoints (background, face fit)" if pix.get("background_checks") else ""))
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
