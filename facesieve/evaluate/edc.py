"""Error-versus-Discard Characteristic (EDC, ISO/IEC 29794-1; as used by the (e)DifFIQA papers).

A quality score is useful when throwing away the lowest-quality comparisons lowers the false
non-match rate. The threshold is fixed once, from impostor scores at a target FMR, and kept while
genuine comparisons are discarded in order of pair quality = min(q_i, q_j). A good quality measure
gives a curve that falls fast; random discard stays flat (in expectation at the 0-discard FNMR).

Scores here are *similarities* (higher = more alike), a comparison matches when sim > threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesieve.figures import pyplot, save_figure

DEFAULT_FRACTIONS = np.linspace(0.0, 0.95, 96)
"""Discard fractions 0, 0.01, ..., 0.95."""


def pair_quality(quality: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pair quality = min of the two faces' qualities (the weaker face limits the comparison)."""
    q = np.asarray(quality, dtype=np.float64)
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.minimum(q[p[:, 0]], q[p[:, 1]])


def edc_threshold(imp_sim: np.ndarray, fmr: float = 1e-3) -> float:
    """Similarity threshold whose false match rate (share of impostors with sim > thr) is <= fmr.

    thr = the (floor(fmr * n) + 1)-th largest impostor similarity. With fewer than 1 / fmr
    impostors this is the largest one and the realised FMR is 0.
    """
    imp = np.asarray(imp_sim, dtype=np.float64).reshape(-1)
    if imp.size == 0:
        raise ValueError("no impostor scores to set the threshold from")
    if not 0.0 <= fmr < 1.0:
        raise ValueError(f"fmr must be in [0, 1), got {fmr}")
    k = int(np.floor(fmr * imp.size))
    return float(-np.partition(-imp, k)[k])


def _fractions(fractions: np.ndarray | None) -> np.ndarray:
    f = DEFAULT_FRACTIONS if fractions is None else np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or np.any(f < 0) or np.any(f >= 1):
        raise ValueError("fractions must be a non-empty 1-D array of values in [0, 1)")
    return f


def _fnmr_after_discard(non_match: np.ndarray, quality: np.ndarray, f: np.ndarray) -> np.ndarray:
    """FNMR of the genuine pairs left after dropping floor(f * G) lowest-quality ones.

    Pairs whose quality ties with the cut are dropped in proportion (the expectation over random
    tie-breaking), so a constant quality gives exactly the 0-discard FNMR, with no order bias.
    """
    g = quality.size
    order = np.argsort(quality, kind="stable")
    q = quality[order]
    cnm = np.concatenate([[0.0], np.cumsum(non_match[order])])
    cut = np.floor(f * g + 1e-9).astype(np.int64)
    out = np.full(f.shape, np.nan)
    ok = cut < g
    c = cut[ok]
    lo = np.searchsorted(q, q[c], side="left")
    hi = np.searchsorted(q, q[c], side="right")
    expected = (cnm[g] - cnm[hi]) + (hi - c) / (hi - lo) * (cnm[hi] - cnm[lo])
    out[ok] = expected / (g - c)
    return out


def edc_curve(
    gen_sim: np.ndarray,
    imp_sim: np.ndarray,
    pair_quality: np.ndarray,
    fmr: float = 1e-3,
    fractions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(fractions, fnmr): FNMR of genuine pairs at the fixed threshold vs share discarded."""
    gen = np.asarray(gen_sim, dtype=np.float64).reshape(-1)
    q = np.asarray(pair_quality, dtype=np.float64).reshape(-1)
    if gen.size == 0:
        raise ValueError("no genuine scores")
    if gen.shape != q.shape:
        raise ValueError(f"{gen.size} genuine scores but {q.size} pair qualities")
    if not np.all(np.isfinite(q)):
        raise ValueError("pair qualities must be finite; leave pairs without a quality out")
    f = _fractions(fractions)
    thr = edc_threshold(imp_sim, fmr)
    return f, _fnmr_after_discard((gen <= thr).astype(np.float64), q, f)


def random_edc(
    gen_sim: np.ndarray,
    imp_sim: np.ndarray,
    *,
    fmr: float = 1e-3,
    fractions: np.ndarray | None = None,
    seed: int = 0,
    repeats: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: mean EDC over ``repeats`` random qualities (flat, on average, at the 0-discard
    FNMR)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    gen = np.asarray(gen_sim, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    f = _fractions(fractions)
    curves = [edc_curve(gen, imp_sim, rng.random(gen.size), fmr, f)[1] for _ in range(repeats)]
    return f, np.mean(curves, axis=0)


def pauc(
    fractions: np.ndarray, fnmr: np.ndarray, upper: float = 0.3, *, normalize: bool = False
) -> float:
    """Partial area under the EDC from 0 to ``upper`` discarded (trapezoid; interpolated at upper).

    normalize=False: the raw area (FNMR x fraction units; lower is better).
    normalize=True: divided by upper * FNMR at 0 discard, i.e. relative to keeping everything,
    so random discard scores about 1 and a perfect quality measure approaches 0.
    """
    f = np.asarray(fractions, dtype=np.float64)
    e = np.asarray(fnmr, dtype=np.float64)
    if f.shape != e.shape or f.ndim != 1 or f.size < 2:
        raise ValueError("fractions and fnmr must be 1-D arrays of the same length (>= 2)")
    if np.any(np.diff(f) <= 0):
        raise ValueError("fractions must be strictly increasing")
    if not f[0] <= upper <= f[-1]:
        raise ValueError(f"upper {upper} outside the curve's range [{f[0]}, {f[-1]}]")
    inside = f < upper
    x = np.concatenate([f[inside], [upper]])
    y = np.concatenate([e[inside], [np.interp(upper, f, e)]])
    area = float(np.trapezoid(y, x))
    if not normalize:
        return area
    base = upper * float(e[0])
    return area / base if base > 0 else float("nan")


def plot_edc(
    path: str | Path,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    upper: float | None = 0.3,
    title: str | None = None,
) -> Path:
    """EDC curves, one line per quality measure; a dotted line marks the pAUC limit."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for i, (name, (f, e)) in enumerate(curves.items()):
        style = "--" if "random" in name.lower() else "-"
        ax.plot(f, e, style, lw=1.5, color=f"C{i}", label=name)
    if upper is not None:
        ax.axvline(upper, color="grey", ls=":", lw=1)
    ax.set_xlabel("fraction of comparisons discarded")
    ax.set_ylabel("FNMR")
    ax.set_xlim(0, None)
    ax.set_ylim(0, None)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
