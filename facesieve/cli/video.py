"""`facesieve extract-video VIDEOS --out DATASET`: a face dataset from videos, one identity per video."""

from __future__ import annotations

import json
from pathlib import Path

from facesieve.cli.options import add_model_options, add_option, common_flags

EPILOG = """\
examples:
  facesieve extract-video clips/ --out faces                  one face a second from every video in clips/
  facesieve extract-video talk.mp4 --out faces --frames 50    50 evenly spaced frames
  facesieve extract-video clips/ --out faces --every 0.5 --save aligned --size 112
  facesieve run faces/ --out cleaned                          then clean the result as any dataset

output:
  faces/<video name>/frame_<t>.jpg   t = the frame's time in ms (zero-padded, so names sort by time)
  faces/.extract-video.csv           one row per sampled frame: kept, duplicate or no_face

A frame whose aligned face is near-identical to the last one kept (by default: at most 1.5 grey levels
apart on average) is dropped; finer near-duplicates are for `facesieve run` to judge. Unreadable videos are reported
and skipped: the exit code is 1 only when no video could be read.
"""


def register(sub) -> None:
    from facesieve.config import EMBEDDERS
    from facesieve.video import DEDUP_DEFAULTS, DEDUP_MODES, SAVE_MODES, VIDEO_EXTENSIONS

    sp = sub.add_parser(
        "extract-video",
        help="sample frames of videos, detect and save one face per frame (a dataset for `run`)",
        description=f"Faces from videos ({', '.join(VIDEO_EXTENSIONS)}): for each video, sampled frames are "
        "detected, the main face is aligned or cropped, repeated frames are dropped, and the faces are "
        "written to DATASET/<video name>/frame_<t>.jpg.",
        epilog=EPILOG,
    )
    sp.add_argument("videos", type=Path, metavar="VIDEOS", help="a video file, or a folder searched for videos")
    sp.add_argument("--out", "-o", type=Path, required=True, metavar="DATASET", help="output dataset folder")
    g = sp.add_argument_group("which frames")
    when = g.add_mutually_exclusive_group()
    when.add_argument("--frames", type=int, default=None, metavar="N", help="N evenly spaced frames per video")
    when.add_argument("--every", type=float, default=None, metavar="S",
                      help="one frame every S seconds (default when neither is given: 1)")
    g = sp.add_argument_group("what is saved")
    g.add_argument("--save", default="crop", choices=SAVE_MODES,
                   help="crop: the face box with --margin around it; aligned: ArcFace-aligned --size square")
    g.add_argument("--margin", type=float, default=0.4, help="crop margin on each side, as a fraction of the face box")
    g.add_argument("--size", type=int, default=112, help="side of an aligned face, in pixels")
    add_option(g, "face_policy", help="which face of a frame with several: nearest the centre weighted by size, or the detector's first")
    g.add_argument("--overwrite", action="store_true", help="replace the frames of a video whose folder is not empty")
    g = sp.add_argument_group("repeated frames")
    g.add_argument("--dedup", default="pixels", choices=DEDUP_MODES,
                   help="how a frame's aligned face is compared with the last one kept: mean grey-level difference, "
                   "perceptual-hash bits, the embedder's cosine, or not at all")
    g.add_argument("--dedup-threshold", type=float, default=None, metavar="T",
                   help=f"a frame repeats the last kept one when pixels differ by at most T grey levels (default "
                   f"{DEDUP_DEFAULTS['pixels']}), phash by at most T bits (default {DEDUP_DEFAULTS['phash']}), or "
                   "embedding cosine is at least T (default: the embedder's calibrated near-duplicate value)")
    g = sp.add_argument_group("models")
    add_option(g, "detector")
    add_option(g, "embedder", help=f"embedder for --dedup embedding: {', '.join(EMBEDDERS)}")
    add_model_options(g, device=True)
    add_option(sp, "jobs", help="videos processed at once (default: all cores)")
    common_flags(sp)
    sp.set_defaults(func=cmd_extract_video)


def cmd_extract_video(args) -> int:
    from facesieve.parallel import default_jobs
    from facesieve.progress import Reporter
    from facesieve.video import ExtractSettings, extract_videos, list_videos

    settings = ExtractSettings(
        frames=args.frames, every=args.every, save=args.save, size=args.size, margin=args.margin,
        dedup=args.dedup, dedup_threshold=args.dedup_threshold,
        detector=args.detector, embedder=args.embedder, face_policy=args.face_policy, overwrite=args.overwrite,
    )
    settings.check()
    videos = list_videos(args.videos)
    jobs = args.jobs or min(default_jobs(), max(1, len(videos)))
    rep = Reporter(quiet=args.quiet or args.json)
    summary = extract_videos(videos if videos else args.videos, args.out, settings, jobs=jobs, reporter=rep)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary)
    return 1 if summary["videos"] and summary["ok"] == 0 and summary["errors"] else 0


def print_summary(s: dict) -> None:
    lines = [
        f"facesieve extract-video: {s['videos']} videos ({s['ok']} ok, {s['errors']} unreadable, {s['skipped']} skipped) "
        f"in {s['seconds']:.1f} s",
        f"  frames sampled {s['sampled']}, with a face {s['faces']}, no face {s['no_face']}, "
        f"repeated {s['duplicates']}, kept {s['kept']}",
    ]
    for f in s["failed"]:
        lines.append(f"  {f['status']}: {f['video']}: {f['reason']}")
    lines.append(f"  output: {s['output']} (one folder per video; log in .extract-video.csv)")
    print("\n".join(lines))
