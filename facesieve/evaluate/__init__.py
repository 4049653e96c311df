"""Evaluation of a dataset's faces: verification, EDC, identity similarity (facesieve evaluate).

Public entry: `facesieve.evaluate.verify(dataset)`. The work lives in `api` (figures from an
EvalSet) and `run` (the EvalSet: the pipeline's cached stages); this module imports neither until
called, so importing it stays cheap.
"""

from __future__ import annotations


def verify(dataset, *, pairs: int | None = None, seed: int = 0, metric: str = "cosine", detector: str = "yunet",
           embedder: str = "sface", workspace=None, jobs: int | None = None, progress: bool = False) -> dict:
    """Verification figures of a dataset's faces, as `facesieve evaluate verify` prints them: EER,
    AUC, TAR at FAR, best-threshold and 10-fold accuracy, with the image / face / failure counts.

    `dataset`: a folder with one sub-folder per identity, or an EvalSet from `facesieve.prepare`.
    `pairs`: None for every genuine and impostor pair, or N sampled per side (seeded by `seed`).
    The faces and embeddings are cached as in `facesieve.prepare`.

    Example::

        >>> import facesieve
        >>> r = facesieve.evaluate.verify("sample/faces")
        >>> round(r["eer"], 2), r["n_faces"], r["n_genuine"], r["n_impostor"]
        (0.09, 27, 78, 273)
    """
    from facesieve.evaluate.api import verify as verify_set
    from facesieve.evaluate.run import EvalSet

    if isinstance(dataset, EvalSet):
        es = dataset
    else:
        from facesieve.api import prepare

        es = prepare(dataset, detector=detector, embedder=embedder, workspace=workspace, jobs=jobs, progress=progress)
    report, _ = verify_set(es, n_pairs=pairs, seed=seed, metric=metric)
    return report
