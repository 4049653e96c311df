"""Figures the report links to: the identity-by-identity similarity heat map (a PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEATMAP = "report_files/similarity.png"
MAX_IDENTITIES = 2000  # beyond this a heat map is a grey square: the overlap table says more


def similarity_heatmap(out: Path, embeddings: np.ndarray, identities: np.ndarray) -> str | None:
    """Draw the clustered identity similarity matrix of the embedded faces; None when it says nothing
    (fewer than two identities, none embedded, or too many identities to draw)."""
    from facesieve.evaluate.similarity import cluster_order, identity_similarity_matrix, plot_matrix

    emb = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(identities).astype(str)
    has = np.isfinite(emb).all(axis=1) & (np.linalg.norm(emb, axis=1) > 0) & (ids != "")
    n_ids = len(np.unique(ids[has]))
    target = Path(out) / HEATMAP
    if n_ids < 2 or n_ids > MAX_IDENTITIES:
        if target.exists():
            target.unlink()
        return None
    labels, m = identity_similarity_matrix(emb[has], ids[has])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".similarity.tmp.png")
    plot_matrix(tmp, labels, m, order=cluster_order(m))
    tmp.replace(target)
    return HEATMAP
