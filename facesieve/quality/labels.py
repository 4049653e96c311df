"""SDD-FIQA pseudo-label files: the `path<TAB>score` layout of the authors' label files.

The labels come from `sddfiqa.sdd_fiqa_labels` (as the "sdd-fiqa" quality method, `sddfiqa.SddFiqa`);
faces of one-image identities have no label (NaN) and are left out of the file.
"""

from __future__ import annotations

import numpy as np

from facesieve.workspace import atomic_write_text


def format_labels(paths: list[str] | np.ndarray, scores: np.ndarray) -> str:
    """`path<TAB>score` lines (the official label-file layout), labelled faces only."""
    lines = [f"{p}\t{s:.6f}" for p, s in zip(paths, np.asarray(scores, float)) if np.isfinite(s)]
    return "".join(line + "\n" for line in lines)


def write_labels(out, paths, scores) -> int:
    """Write the label file atomically; returns the number of lines."""
    text = format_labels(paths, scores)
    atomic_write_text(out, text)
    return text.count("\n")
