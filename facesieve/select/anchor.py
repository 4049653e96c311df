"""Does a face keep its place in its background? The second opinion on a pair of faces that the
face-crop test (samephoto.py) finds too far apart to be one photo.

A re-published photo may be recoloured, retouched, sharpened or re-cropped: its aligned face crop
then differs from the source's by as much as another photo of the person does. But every point of
it, face and background alike, sits where the source has it, up to one similarity transform.
Another photo of the person does not: a web photo from elsewhere shares no background, and another
shot from a fixed camera (a video, a sitting) has the head moved against the background by more
than a re-publication's jitter.

So: SIFT keypoints of both whole images (longest side at most SIDE pixels), matched (Lowe's ratio
test), one similarity fitted (RANSAC) to the matches inside the first face's detector box and one
to the matches outside it. `motion` is how far apart the two transforms put the face's box (its
corners and centre), over the face's width: a re-publication moves its face with its background
(near 0); another shot does not. The counts of matches each fit keeps say how much evidence there
is: a face crop without background, or a flat studio backdrop, has none, and then the test says
nothing (NaN). The cut on `motion` and on the counts are samephoto.Cuts.anchor_*.

The face's own fit says something even without a background: a copy's face keypoints sit where
the source's are up to one similarity, to within resampling and JPEG noise, while another shot's
move with the expression and the pose. A keypoint is found only to a share of its own size (its
scale), on a small face as on a large one, so each match's distance from the fit is taken over
its keypoint's size: the face fit error is the median of that over the fit's matches (on the shared
sets a copy's is about 0.02-0.035, another photo's from about 0.07; a 64-pixel face's copies
like a large face's). samephoto.Cuts.face_* decides with it (a tight crop's overlay, border or
tone edit leaves it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

__all__ = ["SIDE", "ImageKeypoints", "face_motion", "reduced_grey", "NO_EVIDENCE"]

SIDE = 256  # keypoints are found on the image reduced to this longest side
FEATURES = 500  # SIFT keypoints kept an image
LOWE = 0.8  # a match counts when it is this much closer than the second-best
REPROJECTION = 0.01  # RANSAC inlier distance, of the face's width (at least one pixel)
MIN_MATCHES = 4  # matches a region needs before a transform is fitted to it
CACHE_IMAGES = 2048  # images whose keypoints are kept for the next pairs
NO_EVIDENCE = (float("nan"), 0, 0, float("nan"))  # (motion, face matches, background matches, face fit error)


def _mirror_order() -> np.ndarray:
    """The order that makes a SIFT descriptor into the one the mirrored image gives at the same
    point. A descriptor is 4 x 4 cells (rows, columns in the keypoint's own frame) of 8 gradient
    directions; mirroring the image turns that frame over, so the rows run the other way and each
    direction o becomes -o. (Checked against OpenCV on real photos: the descriptors agree exactly
    at the points both views find.) The keypoints are where the mirrored view finds them too."""
    cells, bins = 4, 8
    order = np.empty(cells * cells * bins, np.int64)
    for r in range(cells):
        for c in range(cells):
            for o in range(bins):
                order[((cells - 1 - r) * cells + c) * bins + (bins - o) % bins] = (r * cells + c) * bins + o
    return order


MIRROR_ORDER = _mirror_order()


class ImageKeypoints:
    """SIFT keypoints of each file row's whole image (its mirrored view derived from them), made
    on first use and kept for the most recent CACHE_IMAGES images (the grouping works one
    identity at a time).
    Coordinates are in the original image's pixels. `paths[row]`: the image (None: none);
    `boxes[row]`: the face's detector box (x, y, w, h) in the same image."""

    def __init__(self, paths, boxes: np.ndarray):
        self.paths = list(paths)
        self.boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self._local = threading.local()  # one SIFT detector a thread (OpenCV's is not shared safely)
        self._lock = threading.Lock()  # guards the cache when threads fill it
        self._cache: OrderedDict = OrderedDict()

    def _grey(self, row: int):
        """The image, grey, longest side at most SIDE, and its scale against the upright original."""
        path = self.paths[row]
        if path is None:
            return None, 1.0
        try:
            return reduced_grey(Path(path), SIDE)
        except Exception:  # noqa: BLE001 - an image that cannot be read again gives no evidence
            return None, 1.0

    def get(self, row: int, mirrored: bool = False):
        """(points (k, 2), descriptors (k, 128), sizes (k,)), or None (no image, no keypoints).
        Points and sizes are float32; the descriptors uint8: OpenCV's SIFT descriptors are whole
        numbers 0-255 given as float32, so kept as bytes they take a quarter of the memory and come
        back exact (a full cache of web photos, 160-250 keypoints an image: 45-70 MB, not 170-265).
        The mirrored view is the plain one's keypoints with their descriptors reordered
        (MIRROR_ORDER): no second search."""
        if mirrored:
            plain = self.get(row)
            return None if plain is None else (plain[0], plain[1][:, MIRROR_ORDER], plain[2])
        with self._lock:
            if row in self._cache:
                self._cache.move_to_end(row)
                return self._cache[row]
        grey, scale = self._grey(row)
        out = None
        if grey is not None:
            sift = getattr(self._local, "sift", None)
            if sift is None:
                sift = self._local.sift = cv2.SIFT_create(nfeatures=FEATURES)
            kp, desc = sift.detectAndCompute(grey, None)
            if desc is not None and len(kp) >= MIN_MATCHES:
                out = (np.float32([k.pt for k in kp]) / scale, _as_bytes(desc), np.float32([k.size for k in kp]) / scale)
        with self._lock:
            self._cache[row] = out
            if len(self._cache) > CACHE_IMAGES:
                self._cache.popitem(last=False)
        return out

    def motions(self, pairs, threads: int = 1) -> list[tuple[float, int, int, float]]:
        """`motion` of each (i, j) in `pairs`, worked out by `threads` threads side by side (OpenCV
        lets go of the GIL in the keypoint search and the matching). The images of a slice of pairs
        are read first, each once, so that no two threads search the same image: the first of each
        pair, then the second only where the first has face keypoints to tell with."""
        pairs = [(int(i), int(j)) for i, j in pairs]
        out: list = []
        with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
            for part in _slices(pairs, CACHE_IMAGES // 2):
                firsts = list(dict.fromkeys(i for i, _ in part))
                list(pool.map(self.get, firsts))
                told = {i for i in firsts if self._face_points(i)}
                list(pool.map(self.get, dict.fromkeys(j for i, j in part if i in told)))
                out.extend(pool.map(lambda ij: self.motion(*ij), part))
        return out

    def _face_points(self, row: int) -> bool:
        """Whether the row's image has keypoints inside its face box to tell with."""
        a = self.get(row)
        box = self.boxes[row]
        return a is not None and bool(np.isfinite(box).all()) and int(_inside(a[0], box).sum()) >= MIN_MATCHES

    def motion(self, i: int, j: int) -> tuple[float, int, int, float]:
        """face_motion of rows i and j (i's face box): (motion, face matches, background matches,
        face fit error). The mirrored view of j is tried when the plain one leaves the motion
        unknown (a mirrored copy matches its face plainly, a symmetric thing, but not its
        background); without a motion, the view whose face fit keeps more matches answers (a tight
        crop has no background: its face fit is all there is). An image with no keypoints on its
        face has nothing to tell with, and j is not looked at."""
        if not self._face_points(i):
            return NO_EVIDENCE
        a, box = self.get(i), self.boxes[i]
        best = NO_EVIDENCE
        for mirrored in (False, True):
            b = self.get(j, mirrored)
            m = NO_EVIDENCE if b is None else face_motion(a, b, box, mirrored_b=mirrored)
            if np.isfinite(m[0]):  # the plain view tells: no mirror to look for
                return m
            if m[1] > best[1]:
                best = m
        return best


def _as_bytes(desc: np.ndarray) -> np.ndarray:
    """SIFT descriptors as uint8, checked to be exact (a detector giving other values keeps them)."""
    small = desc.astype(np.uint8)
    return small if np.array_equal(small, desc) else desc


def _slices(pairs: list, most_images: int):
    """Consecutive runs of pairs that together name at most `most_images` images (a run of one
    pair may name two), so the cache holds a run's images while its pairs are worked out."""
    part, seen = [], set()
    for pair in pairs:
        if part and len(seen) + sum(r not in seen for r in set(pair)) > most_images:
            yield part
            part, seen = [], set()
        part.append(pair)
        seen.update(pair)
    if part:
        yield part


def _inside(points: np.ndarray, box) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    return (points[:, 0] >= x) & (points[:, 0] <= x + w) & (points[:, 1] >= y) & (points[:, 1] <= y + h)


def reduced_grey(path: Path, side: int) -> tuple[np.ndarray, float]:
    """The upright image, grey, reduced so its longest side is at most `side`, and the scale
    (reduced pixels per original pixel). A JPEG is decoded at the smallest of its built-in
    reductions that still covers `side` (a large photo decodes several times faster). The pixels
    are the faces stage's (imaging.upright_rgb: transparency over white, 16 bits by their range,
    CMYK by its profile; a plain convert would turn a 16-bit photo white and a cut-out's
    transparent background black)."""
    from PIL import Image

    from facesieve.imaging import upright_rgb

    with Image.open(path) as im:
        if im.width * im.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
            raise ValueError("too large")
        full = max(im.width, im.height)
        want = side / full
        if want < 1.0:
            im.draft("L", (max(1, int(np.ceil(im.width * want))), max(1, int(np.ceil(im.height * want)))))
        decoded = max(im.width, im.height)  # after draft: the reduced decode's size
        grey = np.asarray(Image.fromarray(upright_rgb(im, path)).convert("L"))
    scale = decoded / full
    shrink = min(1.0, side / max(grey.shape))
    if shrink < 1.0:
        grey = cv2.resize(grey, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grey), scale * shrink


def _similarity(src: np.ndarray, dst: np.ndarray, threshold: float):
    """A similarity transform (2x3) taking src onto dst by RANSAC, and its inliers (a mask)."""
    none = np.zeros(len(src), bool)
    if len(src) < MIN_MATCHES:
        return None, none
    M, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                             maxIters=2000, confidence=0.999, refineIters=10)
    if M is None or inliers is None:
        return None, none
    return M, inliers.ravel() > 0


def face_motion(a, b, box_a, mirrored_b: bool = False) -> tuple[float, int, int, float]:
    """How far the face of image a moves against its background in image b, over its width.

    a, b: (points, descriptors, sizes) of the two images (ImageKeypoints.get); box_a: a's face box
    (x, y, w, h). Returns (motion, matches kept by the face's fit, matches kept by the background's
    fit, the face fit's error: the median distance of its kept matches from it, each over its
    keypoint's size in a). The motion is NaN where either region has fewer than MIN_MATCHES
    matches or no fit, the error NaN where the face has none. `mirrored_b`: b's keypoints come
    from its mirrored view (they are given in b's own frame); they are fitted in the mirrored
    frame, where a mirrored copy is a plain similarity."""
    pa, da, sa = a
    pb, db = b[:2]
    if len(da) < 2 or len(db) < 2:
        return NO_EVIDENCE
    if mirrored_b:  # fit in the mirrored view's frame, where the copy is a plain similarity
        pb = pb.copy()
        pb[:, 0] = -pb[:, 0]
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = matcher.knnMatch(np.float32(da), np.float32(db), k=2)  # the detector's own values (ImageKeypoints.get)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < LOWE * m[1].distance]
    if len(good) < 2 * MIN_MATCHES:
        return NO_EVIDENCE
    A = pa[[g.queryIdx for g in good]].astype(np.float64)
    S = sa[[g.queryIdx for g in good]].astype(np.float64)
    B = pb[[g.trainIdx for g in good]].astype(np.float64)
    x, y, w, h = (float(v) for v in box_a)
    if not w > 0:
        return NO_EVIDENCE
    inside = _inside(A, box_a)
    threshold = max(1.0, REPROJECTION * w)
    b_face, a_face = B[inside], A[inside]
    face, kept = _similarity(b_face, a_face, threshold)
    back, kept_back = _similarity(B[~inside], A[~inside], threshold)
    n_face, n_back = int(kept.sum()), int(kept_back.sum())
    err = float("nan")
    if face is not None and n_face >= MIN_MATCHES:
        src, dst = b_face[kept], a_face[kept]
        err = float(np.median(np.linalg.norm(src @ face[:, :2].T + face[:, 2] - dst, axis=1) / S[inside][kept]))
    if face is None or back is None or n_face < MIN_MATCHES or n_back < MIN_MATCHES:
        return float("nan"), n_face, n_back, err
    # the face box's corners and centre, taken into b by the face's fit, then back by each fit
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h], [x + w / 2, y + h / 2]])
    lin = face[:, :2]
    if abs(np.linalg.det(lin)) < 1e-9:
        return float("nan"), n_face, n_back, err
    in_b = (corners - face[:, 2]) @ np.linalg.inv(lin).T
    by_back = in_b @ back[:, :2].T + back[:, 2]
    return float(np.linalg.norm(by_back - corners, axis=1).max() / w), n_face, n_back, err
