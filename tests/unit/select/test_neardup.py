"""Near-duplicate grouping (select/neardup.py) with a second signal: which pairs it asks about and
how the nearest-pair bound limits them. The signal is a stand-in function here; the real one is the
face-crop test (tests/unit/select/test_samephoto.py)."""

from __future__ import annotations

import numpy as np
import pytest

from facesieve.select.neardup import near_duplicate_groups, nearest_pairs
from tests.unit.test_decide import unit


def test_grouping_asks_the_second_signal_only_in_its_band():
    """Cosines to face 0: 0.995 (sure), 0.9 and 0.8 (the band of the second signal), 0.5 (below the floor)."""
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal(32))
    rows = [base]
    for c in (0.995, 0.9, 0.8, 0.5):
        g = rng.standard_normal(32)
        o = unit(g - (g @ base) * base)
        rows.append(unit(c * base + np.sqrt(1 - c * c) * o))
    E = np.stack(rows)
    asked = []

    def pixels(i, j):
        asked.append((i, j))
        return (j == 2, 0.1 if j == 2 else 5.0, "identity")

    r = near_duplicate_groups(E, None, [5, 4, 3, 2, 1], list("abcde"), 0.99, pixels=pixels, pixel_min_sim=0.75)
    assert (0, 1) not in asked and all(j != 4 for _, j in asked)  # sure pair and far pair never asked
    assert (0, 2) in asked and (0, 3) in asked
    assert r.kept_index.tolist()[:3] == [0, 0, 0]
    assert r.signal.tolist()[:3] == ["", "embedding", "pixels"]
    assert r.pixel_residual[2] == pytest.approx(0.1) and np.isnan(r.pixel_residual[1])
    assert "crop score 0.100" in r.reason[2]
    assert not (r.kept_index.to_numpy()[3:] == 0).any()


def test_nearest_pairs_bound_the_checks():
    rng = np.random.default_rng(1)
    E = unit(rng.standard_normal((50, 16)) + 3 * unit(rng.standard_normal(16)))
    pairs = nearest_pairs(E, 2, -1.0, block_size=7)
    assert pairs == nearest_pairs(E, 2, -1.0, block_size=1024)
    assert 50 <= len(pairs) <= 100  # each face brings at most its 2 nearest
    S = E @ E.T
    np.fill_diagonal(S, -np.inf)
    for i in range(50):
        j = int(np.argmax(S[i]))
        assert (min(i, j), max(i, j)) in pairs
    assert nearest_pairs(E, 2, 1.01) == set()


def test_a_face_joins_the_group_of_the_face_it_is_closest_to():
    """Leader clustering gives a face to the first centre that takes it: here the best face (0,
    another video frame) takes 2 (a copy of 1) at crop score 0.005, but not 1 (0.02). 2 is far
    closer to 1 (0.001), so it is attributed to 1, which is kept: who is kept does not change."""
    rng = np.random.default_rng(2)
    base = unit(rng.standard_normal(32))
    E = np.stack([unit(base + 0.3 * unit(rng.standard_normal(32))) for _ in range(3)])
    score = {(0, 1): 0.02, (0, 2): 0.005, (1, 2): 0.001}
    asked = []

    class Check:
        def __call__(self, i, j):
            asked.append((i, j))
            return self.peek(i, j)

        def peek(self, i, j):
            s = score[min(i, j), max(i, j)]
            return s <= 0.01, s

    r = near_duplicate_groups(E, None, [3, 2, 1], list("abc"), 0.999, pixels=Check(), pixel_min_sim=0.5)
    assert r.is_kept.tolist() == [True, True, False]
    assert r.kept_index.tolist() == [0, 1, 1] and r.group[2] == r.group[1] >= 0 and r.group[0] == -1
    assert r.partner_index.tolist() == [-1, -1, -1]  # its score is to its kept face
    assert r.pixel_residual[2] == pytest.approx(0.001) and "crop score 0.001" in r.reason[2]
    assert (1, 2) not in asked and (2, 1) not in asked  # the join peeks: the check's grouped count stays the grouping's
    # without the closer partner, the leader's group stands
    score[1, 2] = 0.008
    r = near_duplicate_groups(E, None, [3, 2, 1], list("abc"), 0.999, pixels=Check(), pixel_min_sim=0.5)
    assert r.kept_index.tolist() == [0, 1, 0]


def test_a_lone_copy_follows_its_source_into_its_group():
    """The best face (0, a video frame) takes 2 at crop score 0.004 but not 1 (0.02); 1 is a copy of
    2 (0.006), visited before it, and left on its own once 2 is taken. One photo is one photo: 1
    follows 2 into 0's group. It does not where the check calls 1 and 2 near-identical shots only
    (a chain of shots drifts), nor where a check cannot tell, nor once another face has joined 1."""
    rng = np.random.default_rng(4)
    base = unit(rng.standard_normal(32))
    E = np.stack([unit(base + 0.3 * unit(rng.standard_normal(32))) for _ in range(4)])
    score = {(0, 1): 0.02, (0, 2): 0.004, (1, 2): 0.006, (0, 3): 0.03, (1, 3): 0.03, (2, 3): 0.03}

    class Check:
        same = True

        def __call__(self, i, j):
            return self.peek(i, j)

        def peek(self, i, j):
            s = score[min(i, j), max(i, j)]
            return s <= 0.01, s

        def same_photo(self, i, j, outright=False):
            return self.same

    def run(check, quality=(4, 3, 2, 1)):
        return near_duplicate_groups(E, None, list(quality), list("abcd"), 0.999, pixels=check, pixel_min_sim=0.5)

    r = run(Check())
    assert r.kept_index.tolist() == [0, 0, 0, 3] and r.group[1] == r.group[2] == r.group[0] >= 0
    assert r.pixel_residual[1] == pytest.approx(0.006) and not r.is_kept[1]
    assert r.partner_index.tolist() == [-1, 2, -1, -1] and "crop score 0.006 to row 2" in r.reason[1]  # its score is to 2, not 0
    shots = Check()
    shots.same = False
    assert run(shots).kept_index.tolist() == [0, 1, 0, 3]

    class Plain(Check):
        same_photo = None

    assert run(Plain()).kept_index.tolist() == [0, 1, 0, 3]
    score[1, 3] = 0.003  # 3 joins 1: 1 is a centre with a member now and stays
    assert run(Check()).kept_index.tolist() == [0, 1, 0, 1]


def test_each_face_meets_its_nearest_face_whatever_the_cosine():
    """A misread copy (cosine 0.5 to its source, under the check's floor) is still its source's
    nearest face: with pixel_nearest the pair goes to the check, and to its prefetch as a companion
    (not a reference of the neighbour-ratio rule); without it, it is never asked."""
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal(32))
    far = [unit(rng.standard_normal(32)) for _ in range(2)]
    g = rng.standard_normal(32)
    copy = unit(0.5 * base + np.sqrt(1 - 0.25) * unit(g - (g @ base) * base))
    E = np.stack([base, copy] + far)
    asked, fetched = [], {}

    class Check:
        def __call__(self, i, j):
            asked.append((min(i, j), max(i, j)))
            return self.peek(i, j)

        def peek(self, i, j):
            return {i, j} == {0, 1}, 0.001 if {i, j} == {0, 1} else 0.5

        def prefetch(self, pairs, companions=()):
            fetched.update({(min(i, j), max(i, j)): (i, j) in companions for i, j in pairs})

    r = near_duplicate_groups(E, None, [4, 3, 2, 1], list("abcd"), 0.999, pixels=Check(), pixel_min_sim=0.7)
    assert (0, 1) not in asked and r.kept_index[1] == 1
    r = near_duplicate_groups(E, None, [4, 3, 2, 1], list("abcd"), 0.999, pixels=Check(), pixel_min_sim=0.7, pixel_nearest=1)
    assert (0, 1) in asked and r.kept_index[1] == 0 and r.signal[1] == "pixels"
    assert fetched[0, 1] is True  # a companion



def test_hash_floors_are_a_low_quantile_of_each_identity_s_own_distances():
    """neardup.hash_floors: per identity, each face's FLOOR_SHARE quantile of its hash distances to
    the identity's other faces (mirror-aware); none for an identity with too few others; a large
    identity is compared with an even spread of FLOOR_MOST faces."""
    from facesieve.select.neardup import FLOOR_LEAST, FLOOR_SHARE, hash_distance, hash_floors

    rng = np.random.default_rng(3)
    ph = rng.integers(0, 2**63, size=(40, 2), dtype=np.int64).view(np.uint64)
    labels = np.array(["a"] * 30 + ["small"] * FLOOR_LEAST + ["b"] * (10 - FLOOR_LEAST))
    f = hash_floors(ph, labels)
    assert np.isnan(f[labels == "small"]).all()  # FLOOR_LEAST - 1 others each: no floor
    assert np.isfinite(f[labels != "small"]).all()
    a = np.flatnonzero(labels == "a")
    for k in a:  # the same distances as hash_distance (the mirrored hash of the face asked about counts)
        others = a[a != k]
        assert f[k] == pytest.approx(np.quantile(hash_distance(ph, np.full(len(others), k), others), FLOOR_SHARE))
    # a large identity: floors from an even spread of FLOOR_MOST faces
    big = rng.integers(0, 2**63, size=(700, 2), dtype=np.int64).view(np.uint64)
    full = hash_floors(big, np.zeros(700, int))
    assert np.isfinite(full).all() and 24 <= np.median(full) <= 30, np.median(full)  # random hashes: 32 bits apart on average
