"""Decision cuts that serve every embedder (the face-crop test's). Each embedder's own calibrated
cosine cuts are on its row of the model catalogue (models/zoo.py: `Thresholds`, `for_embedder`).

How they were chosen is in docs/thresholds.md, on ../shared/data only: the face-crop cuts by
bench/bench_duplicates.py, leave-one-set-out figures for the rule that chose them.
"""

from __future__ import annotations

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
# The face in its background (samephoto.Cuts.anchor_*, select/anchor.py): one photo also at a crop
# score up to ANCHOR_SCORE_CUT when the face moves with its background by at most ANCHOR_MOTION_CUT
# of its width, with at least ANCHOR_MATCHES keypoint matches kept on the face and on the background
# (motion 0: off). Chosen with the cuts above (bench/bench_duplicates.py).
ANCHOR_SCORE_CUT = 0.03
ANCHOR_MOTION_CUT = 0.003
ANCHOR_MATCHES = 12
# The face's own keypoints (samephoto.Cuts.face_*, select/anchor.py): one photo also at a crop score
# up to FACE_SCORE_CUT when the face's keypoint matches fit one similarity to within FACE_FIT_CUT of
# each keypoint's size (median), over at least FACE_MATCHES matches (fit 0: off); on a small-face grid
# up to FACE_SCORE_CUT x COARSE_CUT / SAME_PHOTO_CUT (0.051). Chosen with the cuts above
# (bench/bench_duplicates.py).
FACE_SCORE_CUT = 0.03
FACE_FIT_CUT = 0.04
FACE_MATCHES = 8
# Rare hashes (samephoto.Cuts.rare_*, neardup.hash_floors): one photo also at a crop score up to
# RARE_SCORE_CUT when the two images' pHashes differ in at most RARE_BITS bits and both faces'
# identities otherwise keep their photos at least RARE_FLOOR bits apart (each face's hash floor)
# (bits -1: off); on a small-face grid up to RARE_SCORE_CUT x COARSE_CUT / SAME_PHOTO_CUT, the
# small-face cut's own allowance (0.034). Chosen with the cuts above (bench/bench_duplicates.py).
RARE_SCORE_CUT = 0.02
RARE_BITS = 4
RARE_FLOOR = 18.0
# The face in its background among photos from everywhere (samephoto.Cuts.web_*): where both faces'
# identities keep their photos at least WEB_FLOOR bits apart (the hash floors of the rare-hash
# rule), the background test takes the looser motion cut WEB_MOTION_CUT, with at least WEB_MATCHES
# matches on the face and on the background, up to ANCHOR_SCORE_CUT (motion 0: off). Chosen with
# the cuts above (bench/bench_duplicates.py).
WEB_MOTION_CUT = 0.015
WEB_FLOOR = 18.0
WEB_MATCHES = 4
# The crop score among photos from everywhere (samephoto.Cuts.web_score*): where both faces' hash
# floors are at least WEB_SCORE_FLOOR, one photo also up to WEB_SCORE_CUT (0: off). Chosen with the
# cuts above (bench/bench_duplicates.py).
WEB_SCORE_CUT = 0.02
WEB_SCORE_FLOOR = 20.0
# The whole image among photos from everywhere (samephoto.Cuts.web_hash_*): where both faces' hash
# floors are at least WEB_HASH_FLOOR, one photo when the two images' pHashes differ in at most
# WEB_HASH_BITS bits and the keypoint test keeps at least WEB_HASH_MATCHES matches on the face and on
# its background, whatever the crop score (-1: off). Chosen with the cuts above
# (bench/bench_duplicates.py).
WEB_HASH_BITS = 4
WEB_HASH_FLOOR = 12.0
WEB_HASH_MATCHES = 16
# Candidate pairs: besides each face's nearest faces by cosine, faces whose whole-image hashes are
# within this many bits (neardup.hash_pairs), whatever their cosine. Not a decision (the crop test
# decides): a wider net for copies whose face the embedder misreads.
PAIR_HASH_BITS = 4
# ... and each face's PAIR_NEAREST nearest faces by cosine whatever it is (a tight, dark or covered
# copy's face can be misread down to cosine 0.3 while its source stays its nearest face). Not a
# decision either, and not a reference of the neighbour-ratio rule (samephoto.SamePhotoCheck).
PAIR_NEAREST = 1
# ... and each tight face's (at least samephoto.TIGHT_SHARE of its aligned crop outside its image)
# PAIR_VIEW_NEAREST nearest faces of its identity by its crop's spectrum (samephoto.crop_spectrum),
# whatever their cosine: what lies outside the image (its repeated edge, a copy's frame) moves such
# a face's embedding (yaleB's framed copies: cosine 0.3-0.76 to their source) while its crop test
# still finds the copy. Not a decision either; companions too.
PAIR_VIEW_NEAREST = 1
