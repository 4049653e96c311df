"""Evaluation results from an `EvalSet`: verification figures, EDC per quality method, the identity
similarity matrix, and a model-by-detector comparison. Arrays and tables in, dicts and tables out;
the CLI (facesieve/cli/evaluate.py) only prints them and writes files.

Pairs: every within-identity pair and every cross-identity pair of the faces that were embedded
(n_pairs=None), or up to n_pairs per side sampled with a seed. Images without a face stay rows of
the EvalSet and are counted (`n_failed`, `failed_by_reason`); they are left out of the pairs by
index (make_pairs(valid=...)), so no pair is ever shifted onto the wrong image.

Accuracies count pairs. With all pairs the impostor side is far larger (ORL: 78,000 impostor vs
1,800 genuine), so accuracy then mostly measures impostor rejection; EER, AUC and TAR@FAR do not
depend on the ratio. Sample equal sides (n_pairs) for LFW-like accuracies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from facesieve.errors import FacesieveError, UsageError
from facesieve.evaluate.edc import (
    edc_curve,
    edc_threshold,
    pair_quality,
    pauc,
    random_edc,
)
from facesieve.evaluate.run import EvalSet, load_eval_set
from facesieve.evaluate.similarity import cluster_order, identity_similarity_matrix
from facesieve.evaluate.verification import (
    make_pairs,
    pair_distances,
    roc,
    verification_report,
)

METRICS = ("cosine", "euclidean")
FAILED_LISTED = 100  # failed images named in a verify report (all of them go to failed.csv)


@dataclass
class Pairs:
    pairs: np.ndarray  # (M, 2) row numbers into the EvalSet
    genuine: np.ndarray  # (M,) bool
    distance: np.ndarray  # (M,) float64, lower = more alike


def build_pairs(es: EvalSet, *, n_pairs: int | None = None, seed: int = 0, metric: str = "cosine") -> Pairs:
    """Genuine and impostor pairs among the embedded faces, with their distances."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if n_pairs is not None and n_pairs < 1:
        raise UsageError("--pairs must be at least 1")
    valid = es.valid
    try:
        pairs, genuine = make_pairs(es.identities, n_pairs=n_pairs, seed=seed, valid=valid)
    except ValueError as e:  # too many pairs to list: the user must sample
        raise UsageError(f"{e} (--pairs N)") from None
    n_ids = len(np.unique(es.identities[valid]))
    if not genuine.any():
        raise FacesieveError(f"no genuine pairs: none of the {n_ids} identities has two embedded faces")
    if genuine.all():
        raise FacesieveError("no impostor pairs: verification needs faces of at least two identities")
    return Pairs(pairs, genuine, pair_distances(es.vectors(metric), pairs, metric))


def excluded_pairs(es: EvalSet) -> tuple[int, int]:
    """(genuine, impostor) pairs of the full enumeration that involve an image without a face."""
    def count(mask: np.ndarray) -> tuple[int, int]:
        n = np.unique(es.identities[mask], return_counts=True)[1].astype(np.int64)
        gen = int((n * (n - 1) // 2).sum())
        total = int(n.sum()) * (int(n.sum()) - 1) // 2
        return gen, total - gen

    all_g, all_i = count(np.ones(len(es.paths), bool))
    ok_g, ok_i = count(es.valid)
    return all_g - ok_g, all_i - ok_i


def dataset_counts(es: EvalSet) -> dict:
    """Images, faces and failures: the numbers every report starts with."""
    failed = es.failed()
    return {
        "dataset": str(es.dataset),
        "detector": es.detector,
        "embedder": es.embedder,
        "n_images": len(es.paths),
        "n_identities": len(np.unique(es.identities)),
        "n_faces": int(es.valid.sum()),
        "n_failed": len(failed),
        "failed_by_reason": es.failed_by_reason(),
        "n_fallback": int((es.fallback & es.valid).sum()),
    }


def verify(es: EvalSet, *, n_pairs: int | None = None, seed: int = 0, metric: str = "cosine") -> tuple[dict, Pairs]:
    """The verification report (verification_report's keys plus dataset counts) and the pairs.

    Deterministic for a given EvalSet, n_pairs and seed (the pair sample and the 10 folds are seeded).
    """
    p = build_pairs(es, n_pairs=n_pairs, seed=seed, metric=metric)
    try:
        report = verification_report(p.distance, p.genuine, seed=seed)
    except ValueError as e:  # e.g. fewer than 10 pairs for the 10 folds
        raise FacesieveError(f"cannot evaluate: {e}") from None
    out = dataset_counts(es)
    out.update(metric=metric, pairs="all" if n_pairs is None else int(n_pairs), seed=int(seed))
    if n_pairs is None:
        out["n_genuine_excluded"], out["n_impostor_excluded"] = excluded_pairs(es)
    out.update(report)
    failed = es.failed()
    out["failed"] = [{"path": a, "reason": r or s} for a, s, r in
                     zip(failed["path"][:FAILED_LISTED], failed["status"][:FAILED_LISTED], failed["reason"][:FAILED_LISTED])]
    return out, p


def pairs_table(es: EvalSet, p: Pairs) -> pd.DataFrame:
    return pd.DataFrame({"path_a": es.paths[p.pairs[:, 0]], "path_b": es.paths[p.pairs[:, 1]],
                         "genuine": p.genuine.astype(int), "distance": p.distance})


def roc_points(p: Pairs) -> tuple[np.ndarray, np.ndarray]:
    far, tar, _ = roc(p.distance, p.genuine)
    return far, tar


# ------------------------------------------------------------------------------------------ EDC
@dataclass
class EdcResult:
    fmr: float
    threshold: float  # distance at or below which a comparison matches
    upper: float
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (fractions, fnmr); "random" included
    table: pd.DataFrame  # one row per method: pAUC and FNMR at a few discard levels
    counts: dict = field(default_factory=dict)


def edc(
    es: EvalSet,
    methods: list[str],
    *,
    fmr: float = 1e-3,
    upper: float = 0.3,
    n_pairs: int | None = None,
    seed: int = 0,
    metric: str = "cosine",
    repeats: int = 20,
) -> EdcResult:
    """EDC (FNMR at a fixed FMR threshold vs share of lowest-quality genuine pairs discarded) for each
    method in `es.quality`, plus random discard; pAUC from 0 to `upper`.

    Pair quality = min of the two faces' scores. A face a method could not score (NaN) ranks below
    every scored face, i.e. it is discarded first; the count is in the table (`n_unscored`).
    """
    if not 0.0 <= fmr < 1.0:
        raise UsageError(f"--fmr must be in [0, 1), got {fmr}")
    if not 0.0 < upper < 0.95:
        raise UsageError(f"--upper must be in (0, 0.95), got {upper}")
    missing = [m for m in methods if m not in es.quality]
    if missing:
        raise ValueError(f"no scores for {missing}; pass them to load_eval_set(qualities=...)")
    p = build_pairs(es, n_pairs=n_pairs, seed=seed, metric=metric)
    sim = -p.distance  # EDC works on similarities
    gen, imp = sim[p.genuine], sim[~p.genuine]
    gen_pairs = p.pairs[p.genuine]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    thr = edc_threshold(imp, fmr)
    for name in methods:
        q = es.quality[name]
        scored = np.isfinite(q) & es.valid
        unscored = int((es.valid & ~np.isfinite(q)).sum())
        filled = np.where(scored, q, (np.nanmin(q[scored]) - 1.0) if scored.any() else 0.0)
        curves[name] = edc_curve(gen, imp, pair_quality(filled, gen_pairs), fmr)
        rows.append(_edc_row(name, *curves[name], upper, unscored))
    curves["random"] = random_edc(gen, imp, fmr=fmr, seed=seed, repeats=repeats)
    rows.append(_edc_row("random", *curves["random"], upper, 0))
    table = pd.DataFrame(rows)
    counts = dataset_counts(es)
    counts.update(metric=metric, pairs="all" if n_pairs is None else int(n_pairs), seed=int(seed),
                  n_genuine=int(p.genuine.sum()), n_impostor=int((~p.genuine).sum()),
                  realised_fmr=float(np.mean(imp > thr)))
    return EdcResult(fmr=fmr, threshold=float(-thr), upper=upper, curves=curves, table=table, counts=counts)


def _edc_row(name: str, f: np.ndarray, e: np.ndarray, upper: float, unscored: int) -> dict:
    row = {"method": name, "pauc": pauc(f, e, upper), "pauc_rel": pauc(f, e, upper, normalize=True)}
    for level in (0.0, 0.1, 0.2, 0.3):
        row[f"fnmr_{round(level * 100)}"] = float(np.interp(level, f, e))
    row["n_unscored"] = unscored
    return row


def edc_curves_table(result: EdcResult) -> pd.DataFrame:
    """Long table of every curve: method, discard, fnmr."""
    return pd.concat([pd.DataFrame({"method": name, "discard": f, "fnmr": e}) for name, (f, e) in result.curves.items()],
                     ignore_index=True)


# ------------------------------------------------------------------------------------ similarity
@dataclass
class SimilarityResult:
    labels: np.ndarray  # identities, in cluster order
    matrix: np.ndarray  # (K, K) mean cosine, in cluster order; diagonal without self pairs
    counts: dict


def similarity(es: EvalSet, *, top: int = 10) -> SimilarityResult:
    """Identity x identity mean cosine similarity of the embedded faces, ordered by clustering."""
    valid = es.valid
    if not valid.any():
        raise FacesieveError("no face was embedded; nothing to compare")
    labels, m = identity_similarity_matrix(es.unit[valid], es.identities[valid])
    order = cluster_order(m)
    labels, m = labels[order], m[np.ix_(order, order)]
    counts = dataset_counts(es)
    counts["identities_without_faces"] = sorted(set(es.identities) - set(labels))
    iu = np.triu_indices(len(labels), 1)
    off = m[iu]
    best = np.argsort(-off, kind="stable")[:top]
    counts["closest_pairs"] = [dict(zip(("a", "b"), sorted((str(labels[iu[0][k]]), str(labels[iu[1][k]])))), similarity=float(off[k]))
                               for k in best]
    diag = np.diag(m)
    loose = [k for k in np.argsort(diag, kind="stable") if np.isfinite(diag[k])][:top]
    counts["loosest_identities"] = [{"identity": str(labels[k]), "similarity": float(diag[k])} for k in loose]
    counts["mean_within"] = float(np.nanmean(diag)) if np.isfinite(diag).any() else float("nan")
    counts["mean_between"] = float(off.mean()) if off.size else float("nan")
    return SimilarityResult(labels, m, counts)


# --------------------------------------------------------------------------------------- compare
COMPARE_COLUMNS = ["detector", "embedder", "n_faces", "n_failed", "n_fallback", "accuracy_mean_std", "threshold_mean_std",
                   "accuracy_10fold", "threshold_10fold", "eer", "auc", "tar_far_1e-02", "tar_far_1e-03",
                   "n_genuine", "n_impostor", "seconds", "error"]


def compare(
    dataset,
    detectors: list[str],
    embedders: list[str],
    *,
    n_pairs: int | None = None,
    seed: int = 0,
    metric: str = "cosine",
    on_row=None,
    **load_options,
) -> pd.DataFrame:
    """Verification figures for every detector x embedder combination, one row each.

    A combination that fails (unknown name, missing weights, no faces) gets its error in its row and
    the others still run. `on_row(row)` is called as each row is done. `load_options` go to
    load_eval_set (workspace, jobs, batch_size, face_policy, aligned, reporter).
    """
    rows = []
    for det in detectors:
        for emb in embedders:
            t0 = time.perf_counter()
            row: dict = {"detector": det, "embedder": emb}
            try:
                es = load_eval_set(dataset, detector=det, embedder=emb, **load_options)
                row.update(n_faces=int(es.valid.sum()), n_failed=int((~es.valid).sum()),
                           n_fallback=int((es.fallback & es.valid).sum()))
                report, _ = verify(es, n_pairs=n_pairs, seed=seed, metric=metric)
                row.update({k: report[k] for k in COMPARE_COLUMNS if k in report})
                for far, tar in report["tar_at_far"].items():
                    row[f"tar_far_{far}"] = tar
                row["error"] = ""
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one combination must not stop the others
                row["error"] = str(e) if isinstance(e, FacesieveError) else f"{type(e).__name__}: {e}"
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    table = pd.DataFrame(rows)
    return table.reindex(columns=COMPARE_COLUMNS)
