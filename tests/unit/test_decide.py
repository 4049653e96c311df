"""Decision functions for duplicates, near-duplicates, cross-identity pairs and outliers.

Synthetic embeddings shaped like face embeddings: each identity is a von-Mises-like cluster of
unit vectors around its own centre (same-identity cosine ~0.64, max ~0.85; other identities ~0),
with near-copies, chains, misfiled faces and cross-identity copies injected where a test needs them.
Exact duplicates also run on real files from the shared data (seed_vggface ships byte-identical
copies of the selected images).
"""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesieve.select.crossid import (
    cross_identity_pairs,
    identity_overlaps,
    nearest_neighbours,
)
from facesieve.select.exact import exact_duplicates, preference_rank
from facesieve.select.neardup import near_duplicate_groups
from facesieve.select.outliers import outlier_scores

THR = 0.95


@pytest.fixture(scope="module")
def data_root(shared_data) -> Path:
    return shared_data  # conftest's fixture: missing shared data is a failure, not a skip


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def clusters(
    n_ids: int, per: int, d: int, *, spread: float = 0.75, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E, identity labels, centres): faces = normalise(centre + spread * gaussian / sqrt(d))."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_ids, d)))
    ids = np.repeat(np.arange(n_ids), per)
    E = unit(centres[ids] + spread * rng.standard_normal((ids.size, d)) / np.sqrt(d))
    return E, ids, centres


def near_copy(x: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    return unit(x + step * rng.standard_normal(x.shape) / np.sqrt(x.shape[-1]))


def paths_for(n: int) -> np.ndarray:
    return np.array([f"id/img_{i:05d}.jpg" for i in range(n)], dtype=object)


# ----------------------------------------------------------------------------- exact duplicates


def test_exact_union_of_bytes_and_pixels_keeps_best() -> None:
    byte_hash = ["h1", "h1", "h2", "h3", "", None, "h5", "h6"]
    pixel_hash = ["p1", "p1", "p1", "p3", "p3", "p3", "", ""]
    quality = [0.5, 0.9, 0.7, 0.1, 0.2, np.nan, 0.3, 0.3]
    paths = ["a/1.jpg", "a/2.jpg", "b/3.png", "c/4.jpg", "c/5.jpg", "c/6.jpg", "d/7", "d/8"]
    r = exact_duplicates(byte_hash, pixel_hash, quality, paths)
    assert list(r.columns[:4]) == ["dup_group", "is_kept", "kept_index", "match"]
    assert r.dup_group.tolist() == [0, 0, 0, 1, 1, 1, -1, -1]
    assert r.kept_index.tolist() == [1, 1, 1, 4, 4, 4, 6, 7]
    assert r.is_kept.tolist() == [False, True, False, False, True, False, True, True]
    # row 0 shares bytes with the kept row 1; row 2 (a re-save) only its pixels
    assert r.match.tolist() == ["bytes", "bytes", "pixels", "pixels", "pixels", "pixels", "", ""]
    assert r.group_size.tolist() == [3, 3, 3, 3, 3, 3, 1, 1]
    assert "row 1" in r.reason[2] and r.reason[6] == "unique"


def test_exact_tie_breaks_quality_then_path_length_then_path() -> None:
    h = ["x"] * 4
    # equal quality: the shortest path wins, then the lexicographically smallest
    r = exact_duplicates(h, h, [1.0] * 4, ["dir/bbb.jpg", "dir/ccc.jpg", "d/zz.jpg", "d/aa.jpg"])
    assert r.kept_index.tolist() == [3] * 4
    # higher quality beats a shorter path; NaN quality is lowest
    r = exact_duplicates(h, h, [np.nan, 0.2, 0.1, 0.0], ["a", "long/path/b", "cc", "dd"])
    assert r.kept_index.tolist() == [1] * 4
    # the decision does not depend on row order
    perm = [2, 0, 3, 1]
    paths = np.array(["a", "long/path/b", "cc", "dd"], dtype=object)
    q = np.array([np.nan, 0.2, 0.1, 0.0])
    rp = exact_duplicates(["x"] * 4, ["x"] * 4, q[perm], paths[perm])
    assert paths[perm][rp.kept_index[0]] == "long/path/b"


def test_preference_rank_orders_nan_last() -> None:
    rank = preference_rank([np.nan, 1.0, -np.inf, 1.0, 2.0], ["a", "bb", "c", "b", "zzz"])
    assert np.argsort(rank).tolist() == [4, 3, 1, 0, 2]


def test_exact_across_identities_and_errors() -> None:
    r = exact_duplicates(["a", "a", "b"], ["", "", ""], [1, 1, 1], ["x/1", "y/1", "z/1"],
                         identities=["x", "y", "z"])
    assert r.cross_identity.tolist() == [True, True, False]
    assert r.is_kept.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="entries"):
        exact_duplicates(["a", "b"], ["a"], [1, 1], ["p", "q"])
    assert len(exact_duplicates([], [], [], [])) == 0


def test_exact_on_real_files(data_root: Path) -> None:
    """seed_vggface ships byte copies of its selected images; a PNG re-save matches on pixels."""
    files = sorted((data_root / "seed_vggface").rglob("*.jpg"))
    assert len(files) >= 50
    byte_hash, pixel_hash, paths = [], [], []
    for f in files:
        with Image.open(f) as im:
            pixels = np.asarray(im.convert("RGB"))
        byte_hash.append(hashlib.sha256(f.read_bytes()).hexdigest())
        pixel_hash.append(hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest())
        paths.append(str(f.relative_to(data_root)))
    # one in-memory lossless re-encode: other bytes, same pixels
    with Image.open(files[0]) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    png = Image.open(io.BytesIO(buf.getvalue()))
    pixels = np.asarray(png.convert("RGB"))
    byte_hash.append(hashlib.sha256(buf.getvalue()).hexdigest())
    pixel_hash.append(hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest())
    paths.append("resaved/" + files[0].stem + ".png")

    quality = np.r_[np.ones(len(files)), 0.5]  # the re-save is scored lower
    r = exact_duplicates(byte_hash, pixel_hash, quality, paths)
    dropped = r[~r.is_kept]
    kept_paths = {paths[i] for i in r.kept_index[r.dup_group >= 0]}
    selected = sorted((data_root / "seed_vggface" / "seed_selected_k3").rglob("*.jpg"))
    assert len(selected) == 6
    # each selected copy is dropped in favour of the (shorter) dataset path
    assert all(p.startswith("seed_vggface/dataset/") for p in kept_paths)
    assert {paths[i] for i in dropped.index if dropped.match[i] == "bytes"} == {
        str(p.relative_to(data_root)) for p in selected
    }
    assert dropped.match[len(paths) - 1] == "pixels"


# ----------------------------------------------------------------------------- near duplicates


def test_near_copies_grouped_with_their_original() -> None:
    rng = np.random.default_rng(1)
    E, ids, _ = clusters(10, 40, 128, seed=1)
    src = rng.choice(E.shape[0], size=15, replace=False)
    copies = near_copy(E[src], 0.05, rng)
    E2 = np.vstack([E, copies])
    ids2 = np.r_[ids, ids[src]]
    q = np.r_[rng.uniform(0.5, 1.0, E.shape[0]), rng.uniform(0.0, 0.4, src.size)]
    r = near_duplicate_groups(E2, ids2, q, paths_for(E2.shape[0]), THR)
    copy_rows = np.arange(E.shape[0], E2.shape[0])
    assert r.kept_index[copy_rows].tolist() == src.tolist()
    assert not r.is_kept[copy_rows].any()
    assert (r.signal[copy_rows] == "embedding").all()
    assert (r.similarity[copy_rows] >= THR).all()
    assert (r.group >= 0).sum() == 2 * src.size  # distinct photos are never grouped
    assert r.is_kept[src].all() and np.isnan(r.similarity[src]).all()
    assert set(r.group[src]) == set(range(src.size))


def chain(cos_step: float = 0.96) -> np.ndarray:
    """A, B, C on a great circle: cos(A,B) = cos(B,C) = cos_step, cos(A,C) = cos(2 step)."""
    t = np.arccos(cos_step)
    ang = np.array([0.0, t, 2 * t])
    return unit(np.stack([np.cos(ang), np.sin(ang), np.zeros(3), np.zeros(3)], axis=1))


@pytest.mark.parametrize(
    "quality, kept, groups",
    [
        ([3, 2, 1], [0, 0, 2], [0, 0, -1]),  # A best: takes B; C is not A's duplicate
        ([1, 2, 3], [0, 2, 2], [-1, 0, 0]),  # C best: takes B; A stays
        ([2, 3, 1], [1, 1, 1], [0, 0, 0]),  # B best: A and C both duplicate the kept B
    ],
)
def test_chain_does_not_merge_through_the_middle(quality, kept, groups) -> None:
    E = chain()
    assert float(E[0] @ E[2]) < THR < float(E[0] @ E[1])
    r = near_duplicate_groups(E, ["p"] * 3, quality, ["a", "b", "c"], THR)
    assert r.kept_index.tolist() == kept
    assert r.group.tolist() == groups
    dropped = ~r.is_kept
    assert (r.similarity[dropped] >= THR).all()  # every dropped face duplicates its kept face


def test_near_duplicates_stay_within_identity() -> None:
    rng = np.random.default_rng(2)
    E, ids, _ = clusters(4, 10, 64, seed=2)
    copy = near_copy(E[3], 0.03, rng)[None]
    E2 = np.vstack([E, copy])
    ids2 = np.r_[ids, 3]  # the copy of a face of identity 0 filed under identity 3
    r = near_duplicate_groups(E2, ids2, np.ones(41), paths_for(41), THR)
    assert (r.group == -1).all()
    pairs = cross_identity_pairs(E2, ids2, THR)
    assert pairs[["i", "j"]].values.tolist() == [[3, 40]]
    assert pairs.identity_i[0] == 0 and pairs.identity_j[0] == 3


def test_phash_second_signal() -> None:
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal(64))

    def at_cos(c: float) -> np.ndarray:
        """A unit vector at cosine c to base, in a fresh random direction."""
        g = rng.standard_normal(64)
        ortho = unit(g - (g @ base) * base)
        return unit(c * base + np.sqrt(1 - c * c) * ortho)

    E = np.stack([base, at_cos(0.90), at_cos(0.90), at_cos(0.50), at_cos(0.99), at_cos(0.99)])
    h0 = np.uint64(0x0F0F_F0F0_1234_5678)
    flip = lambda bits: np.uint64(int(h0) ^ ((1 << bits) - 1))  # noqa: E731
    phash = np.array([h0, flip(3), flip(20), h0, h0, flip(30)], dtype=np.uint64)
    q = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    r = near_duplicate_groups(E, None, q, list("abcdef"), THR, phash=phash,
                              phash_max_bits=8, phash_min_sim=0.7)
    assert r.kept_index.tolist() == [0, 0, 2, 3, 0, 0]
    assert r.signal.tolist() == ["", "phash", "", "", "both", "embedding"]
    assert r.phash_distance.tolist() == [-1, 3, -1, -1, 0, 30]
    # without hashes the resized copy (cosine 0.90) is missed
    r0 = near_duplicate_groups(E, None, q, list("abcdef"), THR)
    assert r0.kept_index.tolist() == [0, 1, 2, 3, 0, 0]


def walk_identity(n: int, d: int, step: float, seed: int) -> np.ndarray:
    """Video-like identity: a random walk of small steps, so many pairs sit near the threshold."""
    rng = np.random.default_rng(seed)
    x = unit(rng.standard_normal(d))
    out = []
    for _ in range(n):
        x = near_copy(x, step, rng)
        out.append(x)
    return np.stack(out)


def reference_leaders(E, ids, q, paths, thr) -> np.ndarray:
    """Naive leader clustering on the full float64 matrix, for comparison."""
    rank = preference_rank(q, paths)
    S = E.astype(np.float64) @ E.astype(np.float64).T
    centre = np.full(len(E), -1)
    for p in np.argsort(rank):
        if centre[p] >= 0:
            continue
        centre[p] = p
        take = (S[p] >= thr) & (centre < 0) & (ids == ids[p])
        centre[take] = p
    return centre


def test_block_size_independent_and_matches_reference() -> None:
    E = np.vstack([walk_identity(150, 32, 0.12, s) for s in range(3)])
    ids = np.repeat(["a", "b", "c"], 150)
    rng = np.random.default_rng(4)
    q = rng.random(E.shape[0])
    q[::7] = np.nan
    paths = paths_for(E.shape[0])
    # runs of 16 consecutive walk frames share a hash: some such pairs fall below the cosine cut
    phash = rng.integers(0, 2**63, size=E.shape[0], dtype=np.int64).astype(np.uint64)
    phash = phash[np.arange(E.shape[0]) // 16]
    S = E @ E.T
    assert ((S > THR - 0.02) & (S < THR + 0.02)).sum() > 200  # plenty of pairs near the cut

    base = near_duplicate_groups(E, ids, q, paths, THR)
    assert (base.group >= 0).sum() > 100
    np.testing.assert_array_equal(base.kept_index, reference_leaders(E, ids, q, paths, THR))
    for bs in (1, 3, 17):
        other = near_duplicate_groups(E, ids, q, paths, THR, block_size=bs)
        pd.testing.assert_frame_equal(base, other)
    with_hash = near_duplicate_groups(E, ids, q, paths, THR, phash=phash, phash_min_sim=0.8)
    assert (with_hash.signal == "phash").sum() > 0
    for bs in (1, 5):
        other = near_duplicate_groups(E, ids, q, paths, THR, phash=phash, phash_min_sim=0.8,
                                      block_size=bs)
        pd.testing.assert_frame_equal(with_hash, other)


def test_block_size_independent_at_the_threshold_edge() -> None:
    """Faces built at cosine exactly THR to one face: float32 products of different block shapes
    round these either way, so without the float64 re-check block sizes disagree."""
    rng = np.random.default_rng(10)
    d = 512
    base = unit(rng.standard_normal(d)).astype(np.float64)
    g = rng.standard_normal((300, d))
    ortho = g - np.outer(g @ base, base)
    ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
    E = np.vstack([base, THR * base + np.sqrt(1 - THR**2) * ortho]).astype(np.float32)
    q = np.r_[1.0, np.zeros(300)]
    paths = paths_for(301)
    ref = near_duplicate_groups(E, None, q, paths, THR)
    dropped = ~ref.is_kept
    assert dropped.sum() > 10 and (np.abs(ref.similarity[dropped] - THR) < 1e-6).all()
    for bs in (1, 7, 64):
        other = near_duplicate_groups(E, None, q, paths, THR, block_size=bs)
        pd.testing.assert_frame_equal(ref, other)


def test_large_identity_memory_is_bounded() -> None:
    n, d = 5000, 32
    E = walk_identity(n, d, 0.3, 5)
    q = np.linspace(1, 0, n)
    tracemalloc.start()
    r = near_duplicate_groups(E, None, q, paths_for(n), THR, block_size=64)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_matrix = n * n * 4
    assert peak < full_matrix / 8, f"peak {peak / 2**20:.1f} MiB"
    assert (r.group >= 0).any() and (r.similarity[~r.is_kept] >= THR).all()


def test_neardup_input_errors() -> None:
    E, ids, _ = clusters(2, 3, 8)
    with pytest.raises(ValueError, match="L2-normalised"):
        near_duplicate_groups(E * 2, ids, np.ones(6), paths_for(6), THR)
    with pytest.raises(ValueError, match="entries"):
        near_duplicate_groups(E, ids, np.ones(5), paths_for(6), THR)
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_groups(E, ids, np.ones(6), paths_for(6), 1.5)


# ----------------------------------------------------------------------------- cross identity


def brute_cross_pairs(E: np.ndarray, ids: np.ndarray, thr: float) -> set[tuple[int, int]]:
    S = E.astype(np.float64) @ E.astype(np.float64).T
    i, j = np.nonzero(np.triu(S >= thr, 1) & (ids[:, None] != ids[None, :]))
    return set(zip(i.tolist(), j.tolist()))


def test_cross_identity_copies_found_and_match_brute_force() -> None:
    rng = np.random.default_rng(6)
    E, ids, _ = clusters(20, 30, 64, seed=6)
    src = rng.choice(E.shape[0], size=5, replace=False)
    dest = (ids[src] + 7) % 20
    E2 = np.vstack([E, near_copy(E[src], 0.05, rng)])
    ids2 = np.r_[ids, dest]
    r = cross_identity_pairs(E2, ids2, 0.9)
    expect = {(int(s), E.shape[0] + t) for t, s in enumerate(src)}
    assert set(zip(r.i, r.j)) == expect == brute_cross_pairs(E2, ids2, 0.9)
    assert (r.i < r.j).all() and (r.identity_i != r.identity_j).all()
    assert r.similarity.is_monotonic_decreasing and (r.similarity >= 0.9).all()
    # a lower threshold catches look-alikes too; with k = N - 1 the search is complete
    full = cross_identity_pairs(E2, ids2, 0.4, k=E2.shape[0])
    assert set(zip(full.i, full.j)) == brute_cross_pairs(E2, ids2, 0.4)
    assert len(full) > len(r)
    ivf = cross_identity_pairs(E2, ids2, 0.4, k=E2.shape[0], index="ivf", nlist=8, nprobe=8)
    assert set(zip(ivf.i, ivf.j)) == set(zip(full.i, full.j))


def test_nearest_neighbours_excludes_self_with_exact_copies() -> None:
    E, _, _ = clusters(3, 5, 16)
    E = np.vstack([E, E[:2]])  # rows 15, 16 are exact copies of 0, 1
    sims, nn = nearest_neighbours(E, 4)
    assert nn.shape == (17, 4)
    assert not (nn == np.arange(17)[:, None]).any()
    assert nn[0, 0] == 15 and nn[15, 0] == 0 and sims[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_identity_overlaps_finds_split_identity() -> None:
    rng = np.random.default_rng(7)
    E, ids, centres = clusters(12, 20, 64, seed=7)
    split = unit(centres[3] + 0.75 * rng.standard_normal((15, 64)) / 8.0)  # same person, new label
    E2 = np.vstack([E, split])
    labels = np.array([f"id{i:02d}" for i in ids] + ["id99"] * 15)
    r = identity_overlaps(E2, labels, 0.8)
    assert r[["identity_a", "identity_b"]].values.tolist() == [["id03", "id99"]]
    assert r.n_a[0] == 20 and r.n_b[0] == 15 and r.similarity[0] > 0.9
    assert r.distance[0] == pytest.approx(1 - r.similarity[0])
    allpairs = identity_overlaps(E2, labels, -1.0)
    assert len(allpairs) == 13 * 12 // 2
    assert allpairs.similarity.is_monotonic_decreasing


# ----------------------------------------------------------------------------- outliers


def test_mislabeled_face_is_flagged() -> None:
    E, ids, _ = clusters(15, 25, 128, seed=8)
    labels = ids.copy()
    moved = [2 * 25 + 4, 9 * 25 + 1, 9 * 25 + 2, 9 * 25 + 3]  # one from id 2, three from id 9
    labels[moved[0]] = 7
    labels[moved[1:]] = 11
    r = outlier_scores(E, labels)
    assert set(np.flatnonzero(r.is_outlier)) == set(moved)
    assert r.score[moved].min() > r.score.drop(index=moved).max()
    assert r.nearest_other_identity[moved[0]] == 2
    assert (r.knn_same_share[moved] <= 0.25).all()
    assert r.robust_z[moved].min() > 3.5
    assert "mislabeled" in r.reason[moved[0]]
    # reusing a neighbour search gives the same table
    nb = nearest_neighbours(E, 10)
    pd.testing.assert_frame_equal(r, outlier_scores(E, labels, neighbours=nb))


def test_small_identities_get_no_decision() -> None:
    E, ids, _ = clusters(4, 6, 32, seed=9)
    labels = ids.astype(str)
    labels[[0, 6, 12]] = ["solo", "pair", "pair"]  # a 1-face and a 2-face identity
    r = outlier_scores(E, labels)
    small = [0, 6, 12]
    assert r.loc[small, ["centre_sim", "robust_z", "knn_same_share", "score"]].isna().all().all()
    assert not r.is_outlier[small].any()
    assert r.reason[0].startswith("identity has fewer than 3 faces")
    assert r.drop(index=small).centre_sim.notna().all()


def test_whole_dataset_search_switches_to_ivf_above_the_exact_limit():
    from facesieve.select.crossid import EXACT_SEARCH_MAX, index_for

    assert index_for(2) == "flat"
    assert index_for(EXACT_SEARCH_MAX) == "flat"
    assert index_for(EXACT_SEARCH_MAX + 1) == "ivf"


def test_near_duplicates_without_the_crop_test_are_marked() -> None:
    """An embedder without a calibrated crop test (no pixel check): a near-duplicate group forms by
    cosine and hash alone, and its removed face says so (the crop test's rule names are not asked)."""
    from facesieve.decide import DecideSettings, mark_near_duplicates

    n = 4
    v = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    v[1] = v[0]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    decisions = pd.DataFrame({"action": ["keep"] * n, "reason": [""] * n, "detail": [""] * n, "duplicate_of": [""] * n,
                              "similarity": [np.nan] * n, "outlier_score": [np.nan] * n, "belongs_to": [""] * n})
    paths = np.array([f"a/{i}.jpg" for i in range(n)], object)
    mark_near_duplicates(decisions, v, np.array(["a"] * n, object), np.arange(n, dtype=float), paths, np.zeros((n, 2), np.uint64),
                         DecideSettings(near_duplicate=0.95, phash_max_bits=4, phash_min_sim=0.5))
    assert decisions["reason"].tolist() == ["near_duplicate", "", "", ""]
    assert decisions.loc[0, "duplicate_of"] == "a/1.jpg" and decisions.loc[0, "detail"] == "matched by both"
