"""The identity-by-identity similarity matrix, kept for the report's interactive heat map.

A run saves the clustered matrix in the workspace; the page gets it as 8-bit codes (one byte per
cell, base64) and draws it on a canvas, with the two names and the value under the pointer. That
reads at 1,000 identities, where a picture with 1,000 printed labels does not, and needs no
plotting library at report time.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from facesieve.workspace import Workspace

MATRIX = "report_similarity.npz"
MAX_IDENTITIES = 2000  # 4 MB of cells; beyond this the overlap table says more than a picture
NAN_CODE = 255


def save_similarity(ws: Workspace, embeddings: np.ndarray, identities: np.ndarray) -> bool:
    """Compute and store the clustered matrix of the embedded faces; False (and nothing stored) when it
    says nothing: fewer than two identities, none embedded, or too many to draw."""
    from facesieve.evaluate.similarity import cluster_order, identity_similarity_matrix

    emb = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(identities).astype(str)
    has = np.isfinite(emb).all(axis=1) & (np.linalg.norm(emb, axis=1) > 0) & (ids != "")
    target = ws.path(MATRIX)
    n_ids = len(np.unique(ids[has]))
    if n_ids < 2 or n_ids > MAX_IDENTITIES:
        if target.exists():
            target.unlink()
        return False
    labels, m = identity_similarity_matrix(emb[has], ids[has])
    order = cluster_order(m)
    tmp = target.with_name(".report_similarity.tmp.npz")
    np.savez(tmp, labels=labels[order].astype(str), matrix=m[np.ix_(order, order)].astype(np.float32))
    tmp.replace(target)
    return True


def similarity_payload(ws: Workspace) -> dict | None:
    """{labels, lo, hi, codes}: the stored matrix quantised to 0..254 over [lo, hi] (255: no value)."""
    p: Path = ws.path(MATRIX)
    if not p.is_file():
        return None
    with np.load(p, allow_pickle=False) as z:
        labels, m = z["labels"], z["matrix"].astype(np.float64)
    finite = np.isfinite(m)
    if not finite.any():
        return None
    lo, hi = float(m[finite].min()), float(m[finite].max())
    scale = 254.0 / (hi - lo) if hi > lo else 0.0
    codes = np.full(m.shape, NAN_CODE, np.uint8)
    codes[finite] = np.clip(np.rint((m[finite] - lo) * scale), 0, 254).astype(np.uint8)
    return {"labels": [str(s) for s in labels], "lo": round(lo, 4), "hi": round(hi, 4),
            "codes": base64.b64encode(codes.tobytes()).decode("ascii")}
