"""The "uniform" quality: every face weighs the same (FaceDuplicationFilter's behaviour)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from facesieve.quality.base import QualityInput


class Uniform:
    """Every face weighs the same: FaceDuplicationFilter's behaviour."""

    name = "uniform"
    key = "uniform"
    uses_embedder = False

    def score(self, data: QualityInput) -> pd.DataFrame:
        return pd.DataFrame({"quality": np.ones(len(data.crops), dtype=np.float64)})
