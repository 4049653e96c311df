"""Workspace parts: results are found again by (image_id, key), in the wanted order, after compaction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from facesieve.workspace import Workspace, atomic_write_text


def test_parts_collect_in_wanted_order_and_compact(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create({})
    store = ws.stage("faces-x")
    ids = [f"id{i}" for i in range(10)]
    arr = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    # two parts written out of order, one image written twice (as after a crash between parts)
    store.write_part(pd.DataFrame({"image_id": ids[5:], "key": ["k"] * 5, "v": range(5, 10)}), {"vec": arr[5:]})
    store.write_part(pd.DataFrame({"image_id": ids[:6], "key": ["k"] * 6, "v": range(6)}), {"vec": arr[:6]})
    wanted = pd.DataFrame({"image_id": ids[::-1], "key": ["k"] * 10})
    table, arrays = store.collect(wanted, ["vec"])
    assert list(table["image_id"]) == ids[::-1]
    assert list(table["v"]) == list(range(10))[::-1]
    np.testing.assert_array_equal(arrays["vec"], arr[::-1])
    assert len(list((tmp_path / "ws" / "faces-x").glob("part-*.parquet"))) == 1
    # a second collect of the same rows reuses the compacted part as it is
    table2, arrays2 = store.collect(wanted, ["vec"])
    np.testing.assert_array_equal(arrays2["vec"], arr[::-1])


def test_changed_key_is_not_done(tmp_path):
    ws = Workspace(tmp_path / "ws")
    store = ws.stage("s")
    store.write_part(pd.DataFrame({"image_id": ["a", "b"], "key": ["old", "old"]}))
    assert store.done_keys() == {("a", "old"), ("b", "old")}
    assert ("a", "new") not in store.done_keys()


def test_missing_results_raise(tmp_path):
    store = Workspace(tmp_path / "ws").stage("s")
    store.write_part(pd.DataFrame({"image_id": ["a"], "key": ["k"]}))
    import pytest

    with pytest.raises(RuntimeError, match="1 images have no result"):
        store.collect(pd.DataFrame({"image_id": ["a", "b"], "key": ["k", "k"]}))


def test_leftover_temp_files_are_cleaned(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create({})
    atomic_write_text(ws.path("x.json"), "{}")
    stray = ws.root / "s" / ".part-123.parquet.abc.tmp"
    stray.parent.mkdir()
    stray.write_bytes(b"half")
    ws.create({})
    assert not stray.exists()
    assert ws.path("x.json").read_text() == "{}"
