"""Near-duplicate grouping (select/neardup.py) with a second signal: which pairs it asks about and
how the nearest-pair bound limits them. The signal is a stand-in function here; the real one is the
face-crop test (tests/unit/select/test_samephoto.py)."""

from __future__ import annotations

import numpy as np
import pytest

from facesieve.select.neardup import near_duplicate_groups, nearest_pairs
from tests.unit.test_decide import unit


def test_grouping_asks_the_second_signal_only_in_its_band():
    """Cosines to face 0: 0.995 (sure), 0.9 and 0.8 (the band of the second signal), 0.5 (below the floor)."""
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal(32))
    rows = [base]
    for c in (0.995, 0.9, 0.8, 0.5):
        g = rng.standard_normal(32)
        o = unit(g - (g @ base) * base)
        rows.append(unit(c * base + np.sqrt(1 - c * c) * o))
    E = np.stack(rows)
    asked = []

    def pixels(i, j):
        asked.append((i, j))
        return (j == 2, 0.1 if j == 2 else 5.0, "identity")

    r = near_duplicate_groups(E, None, [5, 4, 3, 2, 1], list("abcde"), 0.99, pixels=pixels, pixel_min_sim=0.75)
    assert (0, 1) not in asked and all(j != 4 for _, j in asked)  # sure pair and far pair never asked
    assert (0, 2) in asked and (0, 3) in asked
    assert r.kept_index.tolist()[:3] == [0, 0, 0]
    assert r.signal.tolist()[:3] == ["", "embedding", "pixels"]
    assert r.pixel_residual[2] == pytest.approx(0.1) and np.isnan(r.pixel_residual[1])
    assert "crop score 0.100" in r.reason[2]
    assert not (r.kept_index.to_numpy()[3:] == 0).any()


def test_nearest_pairs_bound_the_checks():
    rng = np.random.default_rng(1)
    E = unit(rng.standard_normal((50, 16)) + 3 * unit(rng.standard_normal(16)))
    pairs = nearest_pairs(E, 2, -1.0, block_size=7)
    assert pairs == nearest_pairs(E, 2, -1.0, block_size=1024)
    assert 50 <= len(pairs) <= 100  # each face brings at most its 2 nearest
    S = E @ E.T
    np.fill_diagonal(S, -np.inf)
    for i in range(50):
        j = int(np.argmax(S[i]))
        assert (min(i, j), max(i, j)) in pairs
    assert nearest_pairs(E, 2, 1.01) == set()
