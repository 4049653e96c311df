"""Faces from videos: sample frames, detect, align or crop, drop repeats, write a dataset folder.

`extract_videos(VIDEOS, OUT)` writes OUT/<video name>/frame_<t>.jpg (t: the frame's time in ms,
zero-padded so names sort by time), one face per kept frame: the layout `facesieve run` reads,
one identity per video. A video that cannot be read is reported in the result, never fatal.

Frames are taken N evenly spaced (the centres of N equal stretches of the video) or one every S
seconds. A frame is dropped when its face is near-identical to the last one kept (a paused or
frozen video, a slideshow, frames repeated by a frame-rate conversion). By default ("pixels") that
is the mean absolute difference of the two aligned 112x112 grey faces, at most 1.5 grey levels.
Measured here on all 19 essex_faces94 identities, each photo written three times running into a
video (728 repeated pairs, 345 pairs of consecutive distinct photos, which are frames of one
sitting and very alike): repeated frames differ by 0 (median) / 1.46-1.58 (99th percentile) grey
levels after MJPG or VP9 coding, distinct ones by at least 1.5-1.96 (1st percentile 2.3). The
64-bit perceptual hash cannot tell these apart (29% of the distinct pairs are within 2 bits,
repeated ones up to 2), nor can SFace's cosine (distinct pairs reach 0.9895, repeated ones fall to
0.9827), so "phash" and "embedding" are offered for other footage, not as the default.
Near-duplicates beyond a repeated frame (the same person a second later) are left to `facesieve
run`, whose calibrated two-signal rule judges them.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SAVE_MODES = ("aligned", "crop")
DEDUP_MODES = ("pixels", "phash", "embedding", "none")
# the default --dedup-threshold per mode: mean grey-level difference, pHash bits of 64; "embedding"
# uses the embedder's calibrated near-duplicate cosine
DEDUP_DEFAULTS = {"pixels": 1.5, "phash": 2}
SEEK_GAP = 64  # frames: a longer jump is a seek, a shorter one is read through (seeking decodes from a keyframe)
DEFAULT_EVERY = 1.0  # seconds, when neither frames nor every is given
LOG_NAME = ".extract-video.csv"  # hidden: `facesieve run` does not scan it


class VideoError(Exception):
    """This video cannot be read (reported for the video, the others go on)."""


@dataclass(frozen=True)
class ExtractSettings:
    frames: int | None = None  # N evenly spaced frames ...
    every: float | None = None  # ... or one every S seconds (default: DEFAULT_EVERY)
    save: str = "crop"  # "aligned": ArcFace-aligned `size` x `size`; "crop": the box with `margin`
    size: int = 112
    margin: float = 0.4  # each side, as a fraction of the face box's longer side
    dedup: str = "pixels"
    dedup_threshold: float | None = None  # None: DEDUP_DEFAULTS, or the embedder's calibrated cosine
    detector: str = "yunet"  # model strings (facesieve/models/spec.py)
    embedder: str = "sface"
    face_policy: str = "central"
    jpeg_quality: int = 95
    overwrite: bool = False

    def check(self) -> None:
        from facesieve.errors import UsageError

        if self.frames is not None and self.every is not None:
            raise UsageError("give --frames or --every, not both")
        if self.frames is not None and self.frames < 1:
            raise UsageError("--frames must be at least 1")
        if self.every is not None and not self.every > 0:
            raise UsageError("--every must be a positive number of seconds")
        if self.save not in SAVE_MODES:
            raise UsageError(f"--save must be one of {', '.join(SAVE_MODES)}")
        if self.dedup not in DEDUP_MODES:
            raise UsageError(f"--dedup must be one of {', '.join(DEDUP_MODES)}")
        if not 16 <= self.size <= 1024:
            raise UsageError("--size must be between 16 and 1024")
        if not 0 <= self.margin <= 2:
            raise UsageError("--margin must be between 0 and 2")
        if self.dedup_threshold is not None and not self.dedup_threshold >= 0:
            raise UsageError("--dedup-threshold must not be negative")
        if self.face_policy not in ("central", "first"):
            raise UsageError("--face-policy must be central or first")


@dataclass
class VideoResult:
    video: str
    folder: str
    status: str = "ok"  # "ok" | "error" | "skipped"
    reason: str = ""
    fps: float = 0.0
    frame_count: int = 0
    sampled: int = 0
    faces: int = 0
    no_face: int = 0
    duplicates: int = 0
    kept: int = 0
    seconds: float = 0.0
    log: list[dict] = field(default_factory=list)  # one row per sampled frame


# ---------------------------------------------------------------- which videos, which frames


def list_videos(path: str | Path) -> list[Path]:
    """A file as given (whatever its extension), or every video below a folder (by extension, any
    case, hidden names skipped), sorted."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        from facesieve.errors import UsageError

        raise UsageError(f"no such file or folder: {p}")
    found = []
    for root, dirs, files in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTENSIONS]
    return sorted(found)


def folder_names(videos: list[Path]) -> list[str]:
    """One output folder per video: its file name without extension, made unique (a.mp4 and a.avi
    become a and a_avi; later clashes get _2, _3...)."""
    names, used = [], set()
    for v in videos:
        base = v.stem or v.name
        name = base
        if name in used:
            name = f"{base}_{v.suffix.lstrip('.').lower()}" if v.suffix else base
        n = 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        names.append(name)
    return names


def frame_indices(count: int, fps: float, frames: int | None = None, every: float | None = None) -> list[int]:
    """Frame numbers to read. `frames`: the centre frame of each of N equal stretches (all frames if
    there are fewer); `every`: frames at 0, S, 2S, ... seconds."""
    if count <= 0:
        return []
    if frames is not None:
        if count <= frames:
            return list(range(count))
        return sorted({min(count - 1, int((i + 0.5) * count / frames)) for i in range(frames)})
    step = (every if every is not None else DEFAULT_EVERY) * (fps if fps > 0 else 25.0)
    out, k = [], 0
    while True:
        i = int(round(k * step))
        if i >= count:
            break
        if not out or i != out[-1]:
            out.append(i)
        k += 1
    return out


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError("cannot open (not a video, or a codec this OpenCV build lacks)")
    return cap


def probe(path: Path) -> tuple[int, float]:
    """(frame count, fps). The container's count is used when it has one; otherwise the frames are
    counted by reading through (some mkv / webm files carry none)."""
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count <= 0:
            count = 0
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if count <= 0:
        raise VideoError("no frames could be read")
    return count, (fps if np.isfinite(fps) and fps > 0 else 0.0)


def read_frames(path: Path, indices: list[int]):
    """Yield (index, rgb) for the wanted frame numbers, in order: short gaps are read through,
    long ones seeked. A frame that cannot be decoded ends the video (its end was shorter than
    the container said)."""
    cap = _open(path)
    try:
        pos = 0  # the frame the next grab() returns
        for i in indices:
            if i - pos > SEEK_GAP:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = i
            while pos < i:
                if not cap.grab():
                    return
                pos += 1
            ok, bgr = cap.read()
            pos += 1
            if not ok or bgr is None:
                return
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield i, cv2.cvtColor(bgr[:, :, :3], cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


# ---------------------------------------------------------------- one video


def crop_with_margin(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """The square around the face box, `margin` of its longer side added on each side, cut at the
    image's edges (no invented pixels)."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    H, W = rgb.shape[:2]
    x0, y0 = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    x1, y1 = min(W, int(round(cx + side / 2))), min(H, int(round(cy + side / 2)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError("face box outside the frame")
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def frame_name(t_ms: int) -> str:
    return f"frame_{int(t_ms):09d}.jpg"


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"cannot encode {path.name}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _prepare_folder(folder: Path, overwrite: bool) -> str | None:
    """None when the folder is ready; else why this video is skipped."""
    if folder.exists() and any(p for p in folder.iterdir() if not p.name.startswith(".")):
        if not overwrite:
            return "output folder is not empty (use --overwrite to replace its frames)"
        for p in folder.glob("frame_*.jpg"):
            p.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return None


@dataclass(frozen=True)
class VideoTask:
    path: str
    folder: str
    settings: ExtractSettings


def extract_video(task: VideoTask) -> VideoResult:
    """Every step for one video; errors become the result's status, never an exception."""
    from facesieve import stages
    from facesieve.faces.align import align
    from facesieve.faces.detect import pick_face

    s = task.settings
    path, folder = Path(task.path), Path(task.folder)
    res = VideoResult(video=str(path), folder=str(folder))
    t0 = time.perf_counter()
    try:
        res.frame_count, res.fps = probe(path)
        skip = _prepare_folder(folder, s.overwrite)
        if skip:
            res.status, res.reason = "skipped", skip
            return res
        det = stages.detector(s.detector)
        emb = stages.embedder(s.embedder) if s.dedup == "embedding" else None
        threshold = dedup_threshold(s)
        last = None  # the last kept face's signature: grey pixels, pHash or unit vector
        indices = frame_indices(res.frame_count, res.fps, s.frames, s.every)
        for i, rgb in read_frames(path, indices):
            res.sampled += 1
            t_ms = int(round(i * 1000.0 / res.fps)) if res.fps > 0 else i
            row = {"video": path.name, "frame": i, "t_ms": t_ms, "status": "", "file": "", "det_score": np.nan, "difference": np.nan}
            res.log.append(row)
            dets = det.detect(rgb)
            idx = pick_face(dets, rgb.shape, s.face_policy)
            if idx is None:
                res.no_face += 1
                row["status"] = "no_face"
                continue
            face = dets[idx]
            res.faces += 1
            row["det_score"] = float(face.score)
            aligned = align(rgb, face.landmarks, 112)
            dup = False
            if s.dedup != "none":
                sig = signature(aligned, s.dedup, emb)
                if last is not None:
                    d = difference(sig, last, s.dedup)
                    row["difference"] = d
                    dup = d >= threshold if s.dedup == "embedding" else d <= threshold
                if not dup:
                    last = sig
            if dup:
                res.duplicates += 1
                row["status"] = "duplicate"
                continue
            out = align(rgb, face.landmarks, s.size) if s.save == "aligned" else crop_with_margin(rgb, face.box, s.margin)
            name = frame_name(t_ms)
            _write_jpeg(folder / name, out, s.jpeg_quality)
            res.kept += 1
            row["status"], row["file"] = "kept", f"{folder.name}/{name}"
        if res.sampled == 0:
            res.status, res.reason = "error", "no frame could be decoded"
    except VideoError as e:
        res.status, res.reason = "error", str(e)
    except Exception as e:  # noqa: BLE001 - a decoder or model failure on one video must not stop the others
        res.status, res.reason = "error", f"{type(e).__name__}: {e}"
    finally:
        res.seconds = round(time.perf_counter() - t0, 3)
    if res.status == "error" and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()  # no empty identity folder for a video that gave nothing
    return res


def signature(aligned: np.ndarray, mode: str, emb=None):
    """What a face is compared by: its grey pixels ("pixels"), 64-bit pHash, or unit embedding."""
    if mode == "pixels":
        return cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if mode == "phash":
        from facesieve.imaging import phash

        return phash(aligned)
    v = np.asarray(emb.embed_batch(np.stack([aligned, aligned])), np.float64)[0]  # a pair: batch-size independent
    return v / max(float(np.linalg.norm(v)), 1e-12)


def difference(a, b, mode: str) -> float:
    """Mean grey-level difference, pHash bits apart, or cosine ("embedding": higher = closer)."""
    if mode == "pixels":
        return float(np.abs(a - b).mean())
    if mode == "phash":
        from facesieve.imaging import hamming

        return float(hamming(a, b))
    return float(a @ b)


def dedup_threshold(s: ExtractSettings) -> float | None:
    """The user's threshold, else the mode's default (for "embedding": the embedder's calibrated
    near-duplicate cosine)."""
    if s.dedup == "none":
        return None
    if s.dedup_threshold is not None:
        return float(s.dedup_threshold)
    if s.dedup in DEDUP_DEFAULTS:
        return float(DEDUP_DEFAULTS[s.dedup])
    from facesieve.errors import UsageError
    from facesieve.models.spec import spec_name
    from facesieve.models.zoo import for_embedder

    try:
        return for_embedder(spec_name(s.embedder)).near_duplicate
    except KeyError:
        raise UsageError(f"--dedup embedding with {spec_name(s.embedder)}: no calibrated threshold; pass --dedup-threshold") from None


# ---------------------------------------------------------------- many videos


def extract_videos(videos: str | Path | list[Path], out: str | Path, settings: ExtractSettings | None = None, *,
                   jobs: int = 1, reporter=None) -> dict:
    """Extract faces from every video into OUT/<video name>/; the summary (also written, with one
    row per sampled frame, to OUT/.extract-video.csv)."""
    import pandas as pd

    from facesieve.errors import UsageError
    from facesieve.models.zoo import check_spec
    from facesieve.parallel import ordered_map
    from facesieve.progress import Reporter

    s = settings or ExtractSettings()
    s.check()
    check_spec(s.detector, "detect")
    if s.dedup == "embedding":
        check_spec(s.embedder, "embed")
    dedup_threshold(s)
    files = videos if isinstance(videos, list) else list_videos(videos)
    if not files:
        raise UsageError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) found in {videos}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rep = reporter or Reporter(quiet=True)
    tasks = [VideoTask(str(f), str(out / n), s) for f, n in zip(files, folder_names(files))]
    t0 = time.perf_counter()
    results: list[VideoResult] = []
    with rep.stage("videos", len(tasks)) as advance:
        for r in ordered_map(extract_video, tasks, max(1, min(jobs, len(tasks))), window=2 * max(1, jobs), chunk=1):
            results.append(r)
            if r.status != "ok":
                rep.warn(f"{r.video}: {r.status}: {r.reason}")
            advance(1)
    log = [row for r in results for row in r.log]
    cols = ["video", "frame", "t_ms", "status", "file", "det_score", "difference"]
    pd.DataFrame(log, columns=cols).to_csv(out / LOG_NAME, index=False)
    return summarise(results, out, s, time.perf_counter() - t0)


def summarise(results: list[VideoResult], out: Path, s: ExtractSettings, seconds: float) -> dict:
    videos = [{k: v for k, v in asdict(r).items() if k != "log"} for r in results]
    return {
        "output": str(out),
        "videos": len(results),
        "ok": sum(r.status == "ok" for r in results),
        "errors": sum(r.status == "error" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "sampled": sum(r.sampled for r in results),
        "faces": sum(r.faces for r in results),
        "no_face": sum(r.no_face for r in results),
        "duplicates": sum(r.duplicates for r in results),
        "kept": sum(r.kept for r in results),
        "seconds": round(seconds, 3),
        "settings": asdict(s),
        "per_video": videos,
        "failed": [{"video": r.video, "status": r.status, "reason": r.reason} for r in results if r.status != "ok"],
    }
