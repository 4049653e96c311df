"""Calibrated decision thresholds per embedder (cosine on L2-normalised vectors).

How they were chosen is in docs/thresholds.md, on ../shared/data only: the cosine cuts from
augmented copies against distinct photos of one person (bench/calibrate_thresholds.py); the
face-crop cuts by bench/bench_duplicates.py, leave-one-set-out figures for the rule that chose them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    near_duplicate: float  # cosine at/above which two faces of one identity are one photo
    phash_max_bits: int  # perceptual-hash Hamming distance for the second signal
    phash_min_sim: float  # ... together with at least this cosine
    cross_identity: float  # cosine at/above which faces of two identities are flagged
    identity_overlap: float  # cosine of identity means at/above which two folders may be one person
    # The face-crop test (select/samephoto.py, the default): pairs of one identity from
    # crop_min_sim up, each face with its nearest faces, are scored on their aligned crops; the
    # embedding alone decides nothing below 1.0 and the hash rule is off. None: no crop test.
    crop_min_sim: float | None = None


# Cuts on the face-crop score (select/samephoto.py): the embedder does not enter the score, so one
# pair of cuts serves every embedder. Chosen on all shared sets (bench/bench_duplicates.py; the
# left-out figures are in docs/thresholds.md).
SAME_PHOTO_CUT = 0.0065
SHOT_CUT = 0.0065
# The neighbour-ratio rule (samephoto.Cuts): one photo also at a score up to RATIO_SCORE_CUT when
# it is at most RATIO_CUT times its faces' median score to their other neighbours, or, for a pair
# with no other neighbour, up to LONE_CUT. Chosen with the cuts above (bench/bench_duplicates.py).
RATIO_SCORE_CUT = 0.01
RATIO_CUT = 0.075
LONE_CUT = 0.02
# The whole-image hash rule (samephoto.Cuts): one photo also at a crop score up to HASH_SCORE_CUT when
# the two images' pHashes (mirror-aware) differ in at most HASH_BITS bits (-1: off). Chosen with the
# cuts above (bench/bench_duplicates.py).
HASH_SCORE_CUT = 0.01
HASH_BITS = 2
# Small faces (samephoto.Cuts.coarse): a pair compared on a grid of 40 pixels or fewer is one photo
# up to COARSE_CUT (0: off). Chosen with the cuts above (bench/bench_duplicates.py).
COARSE_CUT = 0.011
# Candidate pairs: besides each face's nearest faces by cosine, faces whose whole-image hashes are
# within this many bits (neardup.hash_pairs), whatever their cosine. Not a decision (the crop test
# decides): a wider net for copies whose face the embedder misreads.
PAIR_HASH_BITS = 4


DEFAULTS: dict[str, Thresholds] = {
    "sface": Thresholds(near_duplicate=0.97, phash_max_bits=2, phash_min_sim=0.85, cross_identity=0.97, identity_overlap=0.80,
                       crop_min_sim=0.70),
    # dlib's cosines crowd near 1 (distinct same-person photos: median 0.977, max 0.997; 50 photos, 300
    # copies, 153 distinct pairs with bench/calibrate_thresholds.py, docs/thresholds.md). The overlap cut
    # 0.93 came from seed_vggface only; the same script finds distinct people's means up to 0.950 on the
    # other sets, so it lists some distinct pairs in identity_overlaps.csv (not re-chosen yet: a new cut
    # must be chosen on some sets and judged on others)
    "dlib": Thresholds(near_duplicate=0.995, phash_max_bits=2, phash_min_sim=0.95, cross_identity=0.995, identity_overlap=0.93,
                      crop_min_sim=0.93),
}


# Embedders that load weights the user supplies (facesieve/models/zoo.py). Their thresholds are to be
# calibrated on real weights (bench/calibrate_thresholds.py) and are deliberately absent until then:
# a cosine cut that fits SFace's 128-d space says nothing about ArcFace's or AdaFace's 512-d one.
TO_BE_CALIBRATED = ("sface-fp32", "arcface-r100", "arcface-r50", "cosface-r100", "cosface-r50", "adaface-ir101",
                    "mobilefacenet", "arcface", "cosface", "adaface")


def for_embedder(name: str) -> Thresholds:
    """Defaults for a known embedder; others must be calibrated by the user (see docs)."""
    base = name.split(":", 1)[0]
    if base not in DEFAULTS:
        state = "not calibrated yet (to be calibrated)" if base in TO_BE_CALIBRATED else "not calibrated"
        raise KeyError(
            f"thresholds for embedder {base!r} are {state}: pass --near-dup-threshold, --cross-id-threshold and "
            "--overlap-threshold (or --no-dedup); see docs/thresholds.md for how to calibrate them"
        )
    return DEFAULTS[base]
