"""Which person a folder is, and where a photo filed under several identities belongs.

Pure decisions (arrays in, a table out, no I/O). Two questions the per-face outlier rule cannot
answer, because the faces filed wrongly there agree with each other:

1. **Contaminated folders.** Each folder's faces are split into groups by average-linkage
   clustering on cosine, cut at `threshold`: two groups whose faces are on average less similar
   than that are two people; so are two groups of >= `min_group` faces whose mean faces have
   cosine below `norm` (the same average over the groups' own tightness: people who are close in
   absolute terms, as under one lighting rig, are still apart on this scale), unless the groups
   average at least `same`, the embedder's own verification threshold (two looks of one person). A group of another
   folder whose mean face has cosine >= `match` with a group's mean face is the same person there (the cosine of the means is average linkage over
   the two groups' own tightness, so it reads alike on loose web photos and tight video frames).
   A person belongs to the folder where it makes up the larger share of the faces: a group is
   *foreign* when some folder holds the same person at a share at least `share_margin` higher (a
   folder made of that person, against a few intruders). The folder's identity is its largest
   group that is not foreign; when the second such group is at least `even` times its size, size
   does not decide and every such group goes to review, with the folder's other faces (none of
   them can be judged against a person nobody named). Foreign groups are `mislabeled` with
   `belongs_to` naming the folder that owns the person; a person found in another folder at about
   the same share is left undecided (review); a separate group of at least `min_group` faces that
   matches no identity is an outlier. A face left in a smaller group is mislabeled when it fits
   another folder's person better than its own by `fit_margin` (average cosine to each person's
   faces) and at least at the split cut (it would join that person), else it is left to the
   outlier rule (select/outliers.py).
2. **Copies across identities** (the same photo filed under two or more identities): each copy's
   face is compared with the identity faces of every folder holding a copy (average cosine,
   leaving out all copies of that photo). It is kept where it fits best when that fit beats every
   other folder's by `fit_margin`; the copies elsewhere are `mislabeled`, belonging to the best
   folder. Otherwise every copy goes to review. A copy is never dropped for fitting its own
   folder better than another.

The cuts are chosen in `bench/bench_label_noise.py` (docs/thresholds.md, "Identity-level
decisions", with the leave-one-set-out figures).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.cluster.hierarchy import linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from facesieve.select.exact import _hash_codes
from facesieve.select.neardup import check_embeddings, identity_codes

__all__ = ["split_folder", "copy_groups", "identity_decisions", "SPLIT", "MATCH", "EVEN", "SHARE_MARGIN", "FIT_MARGIN", "MIN_GROUP", "NORM", "SAME", "match_floor"]

# SPLIT, MATCH, EVEN, NORM: the lowest-cost cuts on all five shared sets of bench/bench_label_noise.py;
# its leave-one-set-out figures are in docs/thresholds.md ("Identity-level decisions")
SPLIT = 0.30  # SFace average cosine between two groups below which they are two people
MATCH = 0.75  # SFace cosine of two groups' mean faces at or above which groups in two folders are one person
EVEN = 0.75  # second group / largest at or above which size alone does not name the folder's person
SHARE_MARGIN = 0.2  # a person's share of another folder must exceed its share here by this much (fixed, not tuned)
FIT_MARGIN = 0.1  # average cosine by which the best folder must beat the others for a copy (fixed, not tuned)
MIN_GROUP = 3  # faces in a separate group matching no identity before it is flagged itself (fixed, not tuned)
NORM = 0.55  # cosine of two groups' mean faces (each >= MIN_GROUP faces) below which one folder holds two people
# SAME: average cosine at or above which two groups are one person whatever NORM says: SFace's own
# verification threshold (0.363, published with the model in the OpenCV Zoo), not tuned here. Two
# looks of one person (ORL s31's turned and frontal shots: 0.48) stay one; of 2,980 pairs of
# different people in the shared sets, 3 average above it (at most 0.39)
SAME = 0.363
CUTS = {"sface": (SPLIT, MATCH, EVEN, NORM, SAME)}  # per embedder (split, match, even, norm, same); an embedder without them runs without the identity pass

MAX_CLUSTER = 3000  # faces clustered at once; larger folders cluster a sample and assign the rest

# verdicts
IDENTITY, MISLABELED, AMBIGUOUS, UNDECIDED, OUTLIER, COPY_KEPT, COPY_REVIEW = (
    "identity", "mislabeled", "ambiguous", "undecided", "outlier", "copy_kept", "copy_review")


def match_floor(embedder: str) -> float | None:
    """The embedder's verification threshold (`same` of its cuts: the cosine under which two faces
    are not one person), or None where it has no cuts (dlib)."""
    cuts = CUTS.get(embedder)
    return float(cuts[4]) if cuts and len(cuts) > 4 else None


def split_folder(X: np.ndarray, threshold: float = SPLIT, *, norm: float | None = NORM, min_group: int = MIN_GROUP,
                 same: float = SAME, seed: int = 0) -> np.ndarray:
    """Group labels (0 = largest group, then by size) of one folder's unit vectors.

    Average linkage on cosine, read top down: a merge is undone (two people) when the mean cosine
    between its two sides is below `threshold`, or, when both sides hold at least `min_group`
    faces, when the cosine of their mean faces is below `norm`. The second test is the first one
    over the two sides' own tightness, so it reads alike where different people are far apart (web
    photos) and where they are close (one lighting rig, aligned crops: yaleB's people average 0.33
    to each other, above the absolute cut), unless the two sides average at least `same` (the
    embedder's own verification threshold: on average it calls them one person, as with two looks
    of one person, head turned and frontal). `norm` None: the absolute cut alone; `same` 1.0: no ceiling.
    Above MAX_CLUSTER faces a random sample is clustered and every other face joins the group it
    is on average most similar to (or a group of its own when that is below `threshold`).
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    sample = np.arange(n)
    if n > MAX_CLUSTER:
        sample = np.sort(np.random.default_rng(seed).choice(n, MAX_CLUSTER, replace=False))
    Y = X[sample]
    S = np.clip(Y @ Y.T, -1.0, 1.0)
    iu = np.triu_indices(len(sample), 1)
    Z = linkage(1.0 - S[iu], method="average")
    raw = _cut_tree(Z, Y, 1.0 - threshold, norm, min_group, 1.0 - same)
    labels = np.full(n, -1, dtype=np.int64)
    labels[sample] = raw
    rest = np.setdiff1d(np.arange(n), sample)
    if len(rest):
        k = raw.max() + 1
        onehot = np.zeros((len(sample), k))
        onehot[np.arange(len(sample)), raw] = 1.0
        means = (onehot.T @ Y) / onehot.sum(axis=0)[:, None]
        sims = X[rest] @ means.T
        best = sims.argmax(axis=1)
        alone = sims[np.arange(len(rest)), best] < threshold
        labels[rest] = np.where(alone, k + np.arange(len(rest)), best)
    # renumber by size (largest first), ties by first row
    uniq, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    new = np.empty(len(uniq), dtype=np.int64)
    new[order] = np.arange(len(uniq))
    return new[np.searchsorted(uniq, labels)]


def _cut_tree(Z: np.ndarray, Y: np.ndarray, max_dist: float, norm: float | None, min_group: int,
              same_dist: float) -> np.ndarray:
    """Flat labels of a linkage tree walked from the root (see `split_folder`)."""
    n = Y.shape[0]
    sums = np.zeros((2 * n - 1, Y.shape[1]))
    sums[:n] = Y
    count = np.ones(2 * n - 1, dtype=np.int64)
    for k, (a, b) in enumerate(Z[:, :2].astype(np.int64)):
        sums[n + k] = sums[a] + sums[b]
        count[n + k] = count[a] + count[b]
    labels = np.zeros(n, dtype=np.int64)
    stack, done = [2 * n - 2], 0
    while stack:
        node = stack.pop()
        if node >= n:
            a, b = Z[node - n, :2].astype(np.int64)
            two = Z[node - n, 2] > max_dist + 1e-12
            if not two and norm is not None and min(count[a], count[b]) >= min_group and Z[node - n, 2] > same_dist + 1e-12:
                na, nb = np.linalg.norm(sums[a]), np.linalg.norm(sums[b])
                two = na > 1e-12 and nb > 1e-12 and float(sums[a] @ sums[b]) / (na * nb) < norm
            if two:
                stack += [a, b]
                continue
        leaves, todo = [], [node]
        while todo:
            m = todo.pop()
            if m < n:
                leaves.append(m)
            else:
                todo += Z[m - n, :2].astype(np.int64).tolist()
        labels[leaves] = done
        done += 1
    return labels


def copy_groups(
    byte_hash: ArrayLike, pixel_hash: ArrayLike, identities: ArrayLike, pairs: tuple[ArrayLike, ArrayLike] | None = None
) -> np.ndarray:
    """Copy group per row (-1: none) for photos filed under two or more identities.

    Rows are linked when their bytes or decoded pixels hash equal, or by `pairs` (i, j): the
    same-photo pairs of a duplicate detector across identities. Groups inside one identity are
    not returned (-1): those are the duplicate passes' business.
    """
    ids = np.asarray(identities)
    n = ids.shape[0]
    codes, _ = identity_codes(ids, n)
    src, dst = [], []
    for name, h in (("byte_hash", byte_hash), ("pixel_hash", pixel_hash)):
        code = _hash_codes(h, n, name)  # -1 where missing, as the exact-duplicate pass reads them
        rows = np.flatnonzero(code >= 0)
        if len(rows):
            first = pd.Series(rows).groupby(code[rows]).transform("min").to_numpy()
            src.append(rows)
            dst.append(first)
    if pairs is not None:
        src.append(np.asarray(pairs[0], dtype=np.int64))
        dst.append(np.asarray(pairs[1], dtype=np.int64))
    out = np.full(n, -1, dtype=np.int64)
    if not src or n == 0:
        return out
    a, b = np.concatenate(src), np.concatenate(dst)
    _, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    spans = pd.Series(codes).groupby(comp).nunique()
    multi = spans.index[spans.to_numpy() > 1]
    keep = np.isin(comp, multi)
    number, _ = pd.factorize(comp[keep])
    out[keep] = number
    return out


def identity_decisions(
    E: ArrayLike,
    identities: ArrayLike,
    copies: ArrayLike | None = None,
    *,
    threshold: float = SPLIT,
    match: float = MATCH,
    even: float = EVEN,
    share_margin: float = SHARE_MARGIN,
    fit_margin: float = FIT_MARGIN,
    min_group: int = MIN_GROUP,
    norm: float | None = NORM,
    same: float = SAME,
) -> pd.DataFrame:
    """Folder splits and copy resolution for N faces (see the module docstring).

    Args:
        E: (N, d) unit embeddings of the faces to judge.
        identities: (N,) folder labels.
        copies: (N,) copy group per row from `copy_groups` (-1: not a cross-identity copy).

    Returns one row per face, same order:
        group (int64): the face's group inside its folder (0 = largest).
        verdict (str): "identity" (the folder's person), "mislabeled", "ambiguous" (an even split,
            review), "undecided" (the person is as much another folder's), "outlier" (a separate
            group matching no identity), "copy_kept", "copy_review", or "" (no decision: a face
            left alone, e.g. a one-face group for the outlier rule).
        belongs_to (str): for "mislabeled", the identity the face fits.
        fit (float64): for copies, the average cosine to its own folder's identity faces.
        detail (str): the evidence in words.
    """
    X = check_embeddings(E).astype(np.float64)
    n = X.shape[0]
    codes, labels = identity_codes(identities, n)
    copies = np.full(n, -1, dtype=np.int64) if copies is None else np.asarray(copies, dtype=np.int64)

    group = np.zeros(n, dtype=np.int64)
    gid = np.zeros(n, dtype=np.int64)  # dataset-wide group number
    g_folder, g_size = [], []
    folder_size = np.bincount(codes, minlength=len(labels))
    folder_rows = _members(codes, len(labels))
    for f, rows in enumerate(folder_rows):
        lab = split_folder(X[rows], threshold, norm=norm, min_group=min_group, same=same)
        group[rows] = lab
        gid[rows] = len(g_folder) + lab
        sizes = np.bincount(lab) if len(lab) else np.zeros(0, np.int64)
        g_folder += [f] * len(sizes)
        g_size += sizes.tolist()
    g_folder, g_size = np.array(g_folder, dtype=np.int64), np.array(g_size, dtype=np.int64)
    G = len(g_folder)
    sums = np.zeros((G, X.shape[1]))
    np.add.at(sums, gid, X)
    means = sums / np.maximum(g_size, 1)[:, None]  # average linkage between groups = means_a . means_b
    share = g_size / folder_size[g_folder]

    # only a group of several faces (or a folder's only face) can claim a person: two odd single
    # photos in two folders that look alike say nothing about who owns whom
    can_claim = g_size >= np.minimum(min_group, folder_size[g_folder])
    claim, claim_group, claim_sim = _claims(means, g_folder, np.where(can_claim, share, -1.0), match)
    foreign = claim >= share + share_margin
    # likewise a lone face that looks like a small group elsewhere is not "the same person at a
    # similar share" (at 64 px, dark frames of two people match): the lone-face rule judges it
    contested = ~foreign & can_claim & (claim_group >= 0) & (claim > share - share_margin)
    g_rows = _members(gid, G)
    folder_groups = _members(g_folder, len(labels))

    verdict = np.full(n, "", dtype=object)
    belongs = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)
    identity_groups: dict[int, np.ndarray] = {}
    for f, gs in enumerate(folder_groups):
        if len(gs) == 0:
            continue
        cand = gs[~foreign[gs]]
        if len(cand) == 0:
            cand = gs
        big = cand[g_size[cand] >= min(min_group, g_size[cand].max())]
        lead = big[np.argmax(g_size[big])]
        rivals = big[(big != lead) & (g_size[big] >= max(2, even * g_size[lead]))]
        gverdict = {}
        if len(rivals):
            ident = np.r_[lead, rivals]
            apart = ", ".join(f"{float(means[lead] @ means[h]):.2f}" for h in rivals)  # average linkage to the largest
            for g in ident:
                gverdict[g] = (AMBIGUOUS, "", f"folder splits into groups of {', '.join(str(g_size[h]) for h in ident)} faces "
                               f"(average cosine to the largest {apart}) and nothing says which is {labels[f]}")
        else:
            ident = np.array([lead])
            gverdict[lead] = (IDENTITY, "", "")
        identity_groups[f] = ident
        for g in gs:
            if g in gverdict:
                continue
            other = labels[g_folder[claim_group[g]]] if claim_group[g] >= 0 else ""
            if foreign[g]:
                gverdict[g] = (MISLABELED, other, f"group of {g_size[g]} faces matching {other} (cosine of the mean faces "
                               f"{claim_sim[g]:.2f}, {claim[g]:.0%} of that folder vs {share[g]:.0%} of this one)")
            elif contested[g] and g_size[g] < g_size[lead]:
                gverdict[g] = (UNDECIDED, "", f"group of {g_size[g]} faces also found in {other} at a similar share")
            elif len(ident) > 1:  # nobody knows who this folder is: no face of it is judged against "its person"
                gverdict[g] = (AMBIGUOUS, "", f"group of {g_size[g]} faces in a folder that splits evenly into "
                               f"{' and '.join(str(g_size[h]) for h in ident)} faces: nothing says which is {labels[f]}")
            elif g_size[g] >= min_group:
                gverdict[g] = (OUTLIER, "", f"separate group of {g_size[g]} faces (average cosine to the folder's "
                               f"person {float(means[g] @ means[lead]):.2f}) matching no identity")
        for g, (v, b, d) in gverdict.items():
            rows = g_rows[g]
            verdict[rows], belongs[rows], detail[rows] = v, b, d

    _loose_faces(X, codes, labels, sums, g_size, identity_groups, fit_margin, threshold, verdict, belongs, detail)
    fit = np.full(n, np.nan)
    _resolve_copies(X, codes, labels, copies, g_rows, folder_rows, identity_groups, fit_margin, verdict, belongs, detail, fit)
    return pd.DataFrame({
        "group": group,
        "verdict": pd.Series(verdict, dtype=object),
        "belongs_to": pd.Series(belongs, dtype=object),
        "fit": fit,
        "detail": pd.Series(detail, dtype=object),
    })


def _members(codes: np.ndarray, k: int) -> list[np.ndarray]:
    """Rows of each code 0..k-1 (one sort, not one scan per code)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(k + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(k)]


def _claims(means: np.ndarray, g_folder: np.ndarray, share: np.ndarray, threshold: float, k: int = 32):
    """Per group: the largest share at which another folder holds the same person (cosine of the
    two groups' mean faces >= threshold), that group, and the cosine; 0 / -1 / 0 where no other
    folder does. Candidates are each group's k nearest groups (FAISS over the mean directions).
    The cosine of the means is average linkage divided by the groups' own tightness, so a loose
    person (web photos) and a tight one (video frames) are matched on the same scale."""
    from facesieve.select.crossid import index_for, nearest_neighbours

    G = len(g_folder)
    claim, claim_group, claim_sim = np.zeros(G), np.full(G, -1, dtype=np.int64), np.zeros(G)
    if G < 2:
        return claim, claim_group, claim_sim
    norm = np.linalg.norm(means, axis=1, keepdims=True)
    unit = np.divide(means, norm, out=np.zeros_like(means), where=norm > 1e-12).astype(np.float32)
    unit[norm[:, 0] <= 1e-12, 0] = 1.0  # a mean of faces pointing every way: any direction, it matches nothing
    _, ids = nearest_neighbours(unit, k, index=index_for(G))
    valid = ids >= 0
    nb = np.clip(ids, 0, None)
    sims = np.einsum("gd,gkd->gk", unit, unit[nb])  # cosine of the means: a person's groups match however loose the person
    ok = valid & (sims >= threshold) & (g_folder[nb] != g_folder[:, None]) & (share[nb] >= 0)
    weighted = np.where(ok, share[nb], -1.0)
    best = weighted.argmax(axis=1)
    rows = np.arange(G)
    has = ok[rows, best]
    claim[has] = share[nb[rows, best]][has]
    claim_group[has] = nb[rows, best][has]
    claim_sim[has] = sims[rows, best][has]
    return claim, claim_group, claim_sim


def _loose_faces(X, codes, labels, sums, g_size, identity_groups, margin, same_person, verdict, belongs, detail) -> None:
    """A face left out of every group decision (a one-face group, say) that fits another folder's
    person better than its own folder's, by `margin` in average cosine, and at least at
    `same_person` (the split cut: the average cosine at which average linkage would join it to
    that person): mislabeled there. A face of nobody in the dataset fits no folder that well and is
    left to the outlier rule, never relabelled into whichever folder it happens to be least far from."""
    folders = np.array([f for f, g in identity_groups.items() if len(g) == 1], dtype=np.int64)
    if len(folders) < 2:
        return
    lead = np.array([identity_groups[f][0] for f in folders])
    means = sums[lead] / g_size[lead][:, None]
    slot = np.full(len(labels), -1, dtype=np.int64)
    slot[folders] = np.arange(len(folders))
    loose = np.flatnonzero((verdict == "") & (slot[codes] >= 0))
    for s in range(0, len(loose), 4096):
        part = loose[s:s + 4096]
        fits = X[part] @ means.T
        at = np.arange(len(part))
        own = fits[at, slot[codes[part]]].copy()
        fits[at, slot[codes[part]]] = -np.inf
        best = fits.argmax(axis=1)
        other = fits[at, best]
        for r, o, b, v in zip(part, own, best, other):
            if v - o >= margin and v >= same_person:
                verdict[r], belongs[r] = MISLABELED, labels[folders[b]]
                detail[r] = f"fits {labels[folders[b]]} (average cosine {v:.2f}) better than its own folder ({o:.2f})"


def _resolve_copies(X, codes, labels, copies, g_rows, folder_rows, identity_groups, margin, verdict, belongs, detail, fit) -> None:
    """Decide each cross-identity copy group by where its face fits (see the module docstring)."""
    groups = copies >= 0
    if not groups.any():
        return
    copy_members = _members(np.where(groups, copies, copies.max() + 1), copies.max() + 2)[:-1]
    ident_rows = {}
    for members in copy_members:
        folders = np.unique(codes[members])
        fits = {}
        for f in folders:
            if f not in ident_rows:
                ident_rows[f] = np.concatenate([g_rows[g] for g in identity_groups.get(f, [])] + [np.zeros(0, np.int64)])
            ref = ident_rows[f][~np.isin(ident_rows[f], members)]  # its person's other faces, no copy of this photo
            if len(ref) == 0:
                ref = folder_rows[f][~np.isin(folder_rows[f], members)]
            face = X[members[codes[members] == f]].mean(axis=0)
            fits[f] = float((X[ref] @ face).mean()) if len(ref) else np.nan
        for r in members:
            fit[r] = fits[codes[r]]
        known = sorted((v, f) for f, v in fits.items() if not np.isnan(v))
        words = ", ".join(f"{labels[f]} {v:.2f}" for v, f in reversed(known))
        best_v, best_f = known[-1] if known else (np.nan, -1)
        second = known[-2][0] if len(known) > 1 else -np.inf
        decided = bool(known) and best_v - second >= margin
        for r in members:
            if not decided or np.isnan(fits[codes[r]]):  # a folder with no other face cannot be judged
                verdict[r], belongs[r] = COPY_REVIEW, ""
                detail[r] = f"same photo under {len(folders)} identities; fit (average cosine) {words or 'unknown'}: undecided"
            elif codes[r] == best_f:
                verdict[r], belongs[r] = COPY_KEPT, ""
                detail[r] = f"same photo under {len(folders)} identities; it fits here best ({words})"
            else:
                verdict[r], belongs[r] = MISLABELED, labels[best_f]
                detail[r] = f"same photo is filed under {labels[best_f]}, which it fits better ({words})"
