"""Verification, EDC and identity-similarity numerics, checked by hand and by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from facesieve.evaluate.edc import (
    edc_curve,
    edc_threshold,
    pair_quality,
    pauc,
    plot_edc,
    random_edc,
)
from facesieve.evaluate.similarity import cluster_order, identity_similarity_matrix, plot_matrix
from facesieve.evaluate.verification import (
    accuracy_at,
    auc,
    best_threshold,
    eer,
    make_pairs,
    pair_distances,
    plot_distance_hist,
    plot_roc,
    roc,
    tar_at_far,
    tenfold_accuracy,
    threshold_mean_std,
    verification_report,
)


@pytest.fixture(scope="module")
def orl(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """ORL faces (40 x 10 real photos) as crude pixel embeddings: 28x23 grey, centred, unit."""
    root = shared_data / "orl_att40"
    vecs, ids = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(person.glob("*.pgm")):
            a = np.asarray(Image.open(img).convert("L").resize((23, 28)), dtype=np.float64).ravel()
            a -= a.mean()
            vecs.append(a / np.linalg.norm(a))
            ids.append(person.name)
    return np.array(vecs), np.array(ids)


# ------------------------------------------------------------------------------ hand-made list
# Eight pairs, distances 0.1 .. 0.8:
#   genuine  0.1 0.2 0.4 0.7      impostor 0.3 0.5 0.6 0.8
HAND_D = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
HAND_G = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)


def test_best_threshold_by_hand():
    # correct pairs per candidate threshold (genuine <= t, impostor > t):
    #   <0.1: 0+4=4  0.15: 1+4=5  0.25: 2+4=6  0.35: 2+3=5  0.45: 3+3=6
    #   0.55: 3+2=5  0.65: 3+1=4  0.75: 4+1=5  >0.8: 4+0=4
    # best 6/8 = 0.75, first reached at 0.25 (ties go to the smallest threshold)
    thr, acc = best_threshold(HAND_D, HAND_G)
    assert thr == pytest.approx(0.25)
    assert acc == pytest.approx(0.75)
    assert accuracy_at(HAND_D, HAND_G, 0.45) == pytest.approx(0.75)
    assert accuracy_at(HAND_D, HAND_G, 0.65) == pytest.approx(0.5)


def test_mean_std_threshold_by_hand():
    # genuine mean (0.1+0.2+0.4+0.7)/4 = 0.35; deviations -.25 -.15 .05 .35
    # population variance (.0625+.0225+.0025+.1225)/4 = .0525, std = .229129 -> thr = .579129
    thr = threshold_mean_std(HAND_D[HAND_G])
    assert thr == pytest.approx(0.35 + np.sqrt(0.0525))
    # at .579: genuine .1 .2 .4 right, .7 wrong; impostor .6 .8 right, .3 .5 wrong -> 5/8
    assert accuracy_at(HAND_D, HAND_G, thr) == pytest.approx(5 / 8)


def test_eer_and_auc_by_hand():
    # ROC along thresholds: (FAR, FRR) = (0,1) (0,.75) (0,.5) (.25,.5) (.25,.25) -> FAR = FRR = .25
    assert eer(HAND_D, HAND_G) == pytest.approx(0.25)
    # AUC = P(genuine closer than impostor): .1 beats 4, .2 beats 4, .4 beats 3, .7 beats 1 -> 12/16
    assert auc(HAND_D, HAND_G) == pytest.approx(0.75)
    # TAR at FAR <= .25 is reached at threshold .4 (3 of 4 genuine); at FAR 0 at .2 (2 of 4)
    t = tar_at_far(HAND_D, HAND_G, fars=(0.25, 1e-3))
    assert t == {"0.25": pytest.approx(0.75), "1e-03": pytest.approx(0.5)}


def test_eer_interpolated_by_hand():
    # genuine .1 .3, impostor .2 .4 .5. (FAR, FRR) at .2 = (1/3, 1/2), at .3 = (1/3, 0):
    # FRR - FAR goes 1/6 -> -1/3, crossing at t = (1/6)/(1/2) = 1/3 of the step:
    # FAR = 1/3, FRR = 1/2 - 1/3 * 1/2 = 1/3 -> EER 1/3
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    g = np.array([1, 0, 1, 0, 0], dtype=bool)
    assert eer(d, g) == pytest.approx(1 / 3)


def test_tenfold_threshold_by_hand():
    # genuine .10 .. .19, impostor .50 .. .59: every fold holds one of each (stratified).
    # The 9 training folds are separable, the best threshold is the midpoint of the largest
    # training genuine and the smallest training impostor: .19 and .50 except in the fold that
    # holds .19 out (.18) and the fold that holds .50 out (.51).
    # mean threshold = (9*.19 + .18 + 9*.50 + .51) / 20 = 6.9 / 20 = .345, accuracy 1 in every fold
    d = np.concatenate([np.arange(10) / 100 + 0.10, np.arange(10) / 100 + 0.50])
    g = np.arange(20) < 10
    for seed in (0, 1, 7):
        acc, acc_std, thr = tenfold_accuracy(d, g, seed=seed)
        assert thr == pytest.approx(0.345)
        assert acc == 1.0 and acc_std == 0.0
    assert auc(d, g) == 1.0
    assert eer(d, g) == 0.0


def test_tenfold_needs_ten_pairs():
    with pytest.raises(ValueError, match="folds"):
        tenfold_accuracy(HAND_D, HAND_G)


def test_tenfold_holds_out_the_threshold():
    # Noisy classes: the held-out estimate cannot beat the in-sample best accuracy.
    rng = np.random.default_rng(3)
    d = np.concatenate([rng.normal(0.3, 0.1, 300), rng.normal(0.6, 0.1, 3000)])
    g = np.arange(d.size) < 300
    acc, std, thr = tenfold_accuracy(d, g, seed=0)
    best_thr, best_acc = best_threshold(d, g)
    assert acc <= best_acc + 1e-12
    assert 0 < std < 0.05
    assert abs(thr - best_thr) < 0.05
    assert tenfold_accuracy(d, g, seed=0) == (acc, std, thr)  # seeded


def test_roc_endpoints_and_tar_at_far_resolution():
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(0.3, 0.1, 500), rng.normal(0.7, 0.1, 5000)])
    g = np.arange(d.size) < 500
    far, tar, thr = roc(d, g)
    assert far[0] == tar[0] == 0 and far[-1] == tar[-1] == 1
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0) and np.all(np.diff(thr) > 0)
    t = tar_at_far(d, g)
    assert set(t) == {"1e-02", "1e-03"} and t["1e-03"] <= t["1e-02"]
    # check against a direct count: the largest threshold with FAR <= 1e-2
    imp = np.sort(d[~g])
    k = int(np.floor(0.01 * imp.size))  # at most k impostors accepted
    cut = imp[k]  # accepting d <= something below this value
    assert t["1e-02"] == pytest.approx(np.mean(d[g] < cut))


def test_verification_report_keys_and_plots(orl, tmp_path):
    emb, ids = orl
    pairs, is_gen = make_pairs(ids)
    dist = pair_distances(emb, pairs)
    rep = verification_report(dist, is_gen)
    assert set(rep) == {
        "accuracy_mean_std", "threshold_mean_std", "accuracy_10fold", "accuracy_10fold_std",
        "threshold_10fold", "eer", "auc", "tar_at_far", "n_genuine", "n_impostor",
    }  # fmt: skip
    assert rep["n_genuine"] == 40 * 45 and rep["n_impostor"] == 400 * 399 // 2 - 1800
    # even raw pixels of these controlled crops separate people far better than chance
    assert rep["auc"] > 0.85 and rep["eer"] < 0.25 and rep["accuracy_10fold"] > 0.9
    far, tar, _ = roc(dist, is_gen)
    png = plot_roc(tmp_path / "roc.png", far, tar)
    hist = plot_distance_hist(
        tmp_path / "hist.png", dist, is_gen,
        {"mean+std": rep["threshold_mean_std"], "10-fold": rep["threshold_10fold"]},
    )  # fmt: skip
    for p in (png, hist):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------- make_pairs
def test_make_pairs_counts_on_real_layout(orl):
    _, ids = orl
    pairs, g = make_pairs(ids)
    n = len(ids)
    assert g.sum() == 40 * (10 * 9 // 2)  # n_a (n_a - 1) / 2 per identity
    assert (~g).sum() == n * (n - 1) // 2 - 40 * 45
    assert np.all(pairs[:, 0] < pairs[:, 1])
    assert np.array_equal(ids[pairs[:, 0]] == ids[pairs[:, 1]], g)
    assert len(np.unique(pairs, axis=0)) == len(pairs)


def test_make_pairs_sampling_is_seeded():
    ids = np.repeat(np.arange(50), 8)
    a = make_pairs(ids, n_pairs=300, seed=5)
    b = make_pairs(ids, n_pairs=300, seed=5)
    c = make_pairs(ids, n_pairs=300, seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    pairs, g = a
    assert g.sum() == 300 and (~g).sum() == 300
    assert len(np.unique(pairs, axis=0)) == 600
    assert np.array_equal(ids[pairs[:, 0]] == ids[pairs[:, 1]], g)
    # asking for more than exist gives all of that side
    pairs, g = make_pairs(ids, n_pairs=10**6)
    assert g.sum() == 50 * 28 and (~g).sum() == 400 * 399 // 2 - 50 * 28


def test_make_pairs_rejection_sampling_large():
    ids = np.repeat(np.arange(4000), 5)  # 2e8 pairs: impostors are rejection-sampled
    pairs, g = make_pairs(ids, n_pairs=50_000, seed=1)
    assert g.sum() == 40_000  # every genuine pair: 4000 * 10
    assert (~g).sum() == 50_000
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    assert np.array_equal(ids[pairs[:, 0]] == ids[pairs[:, 1]], g)


def test_make_pairs_skips_failed_faces():
    ids = np.array(["a", "a", "a", "b", "b", "c"])
    valid = np.array([True, False, True, True, True, True])
    pairs, g = make_pairs(ids, valid=valid)
    assert 1 not in pairs
    assert {tuple(p) for p in pairs[g]} == {(0, 2), (3, 4)}
    assert len(pairs) == 5 * 4 // 2


def test_pair_distances_metrics():
    e = np.array([[3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])
    pairs = np.array([[0, 1], [0, 2]])
    assert pair_distances(e, pairs) == pytest.approx([0.0, 1 - 0.8])
    assert pair_distances(e, pairs, "euclidean") == pytest.approx([5.0, np.hypot(3, 3)])
    with pytest.raises(ValueError):
        pair_distances(e, pairs, "manhattan")


# ------------------------------------------------------------------------------------------ EDC
def test_edc_by_hand():
    # fmr 0 -> threshold = largest impostor similarity .5; genuine .9 .1 .8 .2 -> non-matches .1 .2
    gen = np.array([0.9, 0.1, 0.8, 0.2])
    imp = np.array([0.5, 0.0, -0.2])
    assert edc_threshold(imp, fmr=0.0) == 0.5
    f, e = edc_curve(gen, imp, gen.copy(), fmr=0.0, fractions=np.array([0, 0.25, 0.5, 0.75]))
    # quality = similarity: drop .1 -> 1/3 non-match, drop .1 .2 -> 0
    assert e == pytest.approx([0.5, 1 / 3, 0.0, 0.0])
    # a constant quality drops nothing on purpose: ties are discarded pro rata
    _, e = edc_curve(gen, imp, np.ones(4), fmr=0.0, fractions=np.array([0, 0.25, 0.5]))
    assert e == pytest.approx([0.5, 0.5, 0.5])


def test_edc_threshold_respects_fmr():
    imp = np.random.default_rng(0).normal(size=10_000)
    thr = edc_threshold(imp, fmr=1e-3)
    assert np.mean(imp > thr) <= 1e-3
    assert np.mean(imp >= thr) > 1e-3  # and not needlessly strict


def test_edc_correlated_below_random_anticorrelated_above():
    rng = np.random.default_rng(1)
    n = 4000
    latent = rng.random(n)  # per-pair "true quality"
    gen = 0.2 + 0.6 * latent + rng.normal(0, 0.1, n)  # better pairs look more alike
    imp = rng.normal(0.0, 0.1, 20_000)
    good = latent + rng.normal(0, 0.05, n)  # quality agrees with the truth
    bad = -good  # anti-correlated by construction
    f, e_good = edc_curve(gen, imp, good)
    _, e_bad = edc_curve(gen, imp, bad)
    _, e_rand = random_edc(gen, imp, seed=0, repeats=20)
    upto = f <= 0.3
    assert np.all(e_good[upto][1:] < e_rand[upto][1:])
    assert np.all(e_bad[upto][1:] > e_rand[upto][1:])
    assert e_good[0] == e_bad[0] == pytest.approx(e_rand[0])
    assert pauc(f, e_good) < pauc(f, e_rand) < pauc(f, e_bad)
    assert pauc(f, e_rand, normalize=True) == pytest.approx(1.0, abs=0.05)


def test_pauc_trapezoid_and_interpolation():
    f = np.array([0.0, 0.2, 0.4])
    e = np.array([0.2, 0.1, 0.0])
    # area to .3: trapezoid (0..0.2) = .2*(.2+.1)/2 = .03, (0.2..0.3) = .1*(.1+.05)/2 = .0075
    assert pauc(f, e, 0.3) == pytest.approx(0.0375)
    assert pauc(f, e, 0.3, normalize=True) == pytest.approx(0.0375 / (0.3 * 0.2))
    with pytest.raises(ValueError):
        pauc(f, e, 0.5)


def test_pair_quality_is_min_and_plot(tmp_path):
    q = np.array([0.9, 0.2, 0.5])
    assert pair_quality(q, np.array([[0, 1], [0, 2]])) == pytest.approx([0.2, 0.5])
    f = np.linspace(0, 0.95, 20)
    p = plot_edc(tmp_path / "edc.png", {"q": (f, 1 - f), "random": (f, np.full_like(f, 0.5))})
    assert p.read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------------- similarity
def _brute_similarity(emb: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.unique(ids)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    m = np.full((len(labels), len(labels)), np.nan)
    for a, b in itertools.product(range(len(labels)), repeat=2):
        ia, ib = np.flatnonzero(ids == labels[a]), np.flatnonzero(ids == labels[b])
        sims = [float(e[i] @ e[j]) for i in ia for j in ib if i != j]
        if sims:
            m[a, b] = np.mean(sims)
    return labels, m


def test_similarity_matrix_equals_brute_force(orl):
    emb, ids = orl
    keep = np.r_[0:60, 395]  # s01..s06 plus one face of s40: a one-face identity
    emb = emb[keep] * np.random.default_rng(0).uniform(0.5, 2, (len(keep), 1))  # not unit length
    labels, m = identity_similarity_matrix(emb, ids[keep], chunk=17)
    ref_labels, ref = _brute_similarity(emb, ids[keep])
    assert list(labels) == list(ref_labels)
    np.testing.assert_allclose(m, ref, rtol=0, atol=1e-12)
    assert np.isnan(m[-1, -1])
    off = m[:-1, :-1][~np.eye(6, dtype=bool)].reshape(6, 5)
    assert np.all(np.diag(m)[:-1] > off.mean(axis=1))  # a person resembles themself most


def test_cluster_order_groups_similar_identities():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 32))
    cent = np.repeat(base, 4, axis=0) + 0.3 * rng.normal(size=(8, 32))  # two families of 4
    perm = rng.permutation(8)
    cent = cent[perm]
    ids = np.repeat(np.arange(8), 5)
    emb = cent[ids] + 0.2 * rng.normal(size=(40, 32))
    _, m = identity_similarity_matrix(emb, ids)
    order = cluster_order(m)
    assert sorted(order) == list(range(8))
    family = (perm >= 4).astype(int)[order]
    assert list(family) in ([0] * 4 + [1] * 4, [1] * 4 + [0] * 4)


def test_plot_matrix_grows_with_identities(orl, tmp_path):
    emb, ids = orl
    labels, m = identity_similarity_matrix(emb, ids)
    big = plot_matrix(tmp_path / "m40.png", labels, m, order=cluster_order(m))
    small = plot_matrix(tmp_path / "m8.png", labels[:8], m[:8, :8])
    w40 = Image.open(big).size
    w8 = Image.open(small).size
    assert w40[0] > w8[0] * 1.5 and w40[1] > w8[1] * 1.5
