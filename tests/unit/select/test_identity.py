"""Identity-level decisions on real photos (pins_web): a folder holding two people, the same photo
filed under several identities, and --relabel. The pure rules are in facesieve/select/identity.py."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facesieve.cli import main
from facesieve.select.identity import copy_groups, identity_decisions, split_folder

PEOPLE = ("Adriana_Lima", "Alex_Lawther", "Alexandra_Daddario", "Alvaro_Morte", "Amanda_Crew")
N = 12


def photos(shared: Path, person: str, start: int = 0, n: int = N) -> list[Path]:
    return sorted((shared / "pins_web" / person).glob("*.jpg"))[start:start + n]


def fill(folder: Path, files: list[Path], prefix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, folder / (prefix + f.name))


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One workspace for every run here: faces are cached by image bytes, so each photo is embedded once."""
    return tmp_path_factory.mktemp("ws") / "ws"


def run(data: Path, out: Path, ws: Path, *extra: str) -> tuple[pd.DataFrame, dict]:
    import json

    assert main(["run", str(data), "--out", str(out), "--workspace", str(ws), "--jobs", "1", "--quality", "image",
                 "--no-report", "--quiet", *extra]) == 0
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    return m, json.loads((out / "summary.json").read_text())


def test_half_a_folder_copied_from_another_identity(shared_data, tmp_path, workspace):
    """B holds its own 12 photos plus byte-identical copies of all 12 of A's: A stays whole, the
    copies in B are mislabeled, belonging to A, and nothing is emptied."""
    a, b, *rest = PEOPLE
    data = tmp_path / "data"
    fill(data / a, photos(shared_data, a))
    fill(data / b, photos(shared_data, b))
    fill(data / b, photos(shared_data, a), prefix="from_a_")
    for p in rest:
        fill(data / p, photos(shared_data, p))
    before = digest(data)
    m, summary = run(data, tmp_path / "out", workspace, "--relabel")
    assert digest(data) == before
    mine = m[m["identity"] == a]
    assert (mine["action"] == "keep").all(), mine[mine["action"] != "keep"][["path", "reason", "detail"]]
    intr = m[m["path"].str.startswith(f"{b}/from_a_")]
    assert len(intr) == N
    assert (intr["reason"] == "mislabeled").all(), intr[["path", "reason", "detail"]]
    assert (intr["belongs_to"] == a).all()
    assert (intr["action"] == "remove").all()  # the same photo is kept under A: nothing is lost
    assert set(intr["duplicate_of"]) <= set(mine["path"])
    own_b = m[(m["identity"] == b) & ~m["path"].str.startswith(f"{b}/from_a_")]
    assert (own_b["action"] == "keep").mean() >= 0.9
    assert summary["identities_emptied"] == 0
    assert summary["mislabeled"] == N
    # --relabel copies nothing here: every intruder's photo is in A's output already
    assert (m["relabeled_to"] == "").all()
    assert sorted(p.name for p in (tmp_path / "out" / a).glob("*.jpg")) == sorted(p.name for p in photos(shared_data, a))


def test_relabel_copies_moved_faces_into_the_identity_they_belong_to(shared_data, tmp_path, workspace):
    """Half of A's photos moved into B (no copies left): flagged mislabeled with belongs_to A;
    --relabel puts them in OUT/A, the input untouched; without it OUT/A has only A's own."""
    a, b, *rest = PEOPLE
    data = tmp_path / "data"
    moved = photos(shared_data, a)[: N // 2]
    fill(data / a, photos(shared_data, a)[N // 2:])
    fill(data / b, photos(shared_data, b))
    fill(data / b, moved, prefix="from_a_")
    for p in rest:
        fill(data / p, photos(shared_data, p))
    before = digest(data)
    m, summary = run(data, tmp_path / "out", workspace, "--relabel")
    assert digest(data) == before
    intr = m[m["path"].str.startswith(f"{b}/from_a_")].set_index("path")
    assert (intr["reason"] == "mislabeled").all() and (intr["belongs_to"] == a).all(), intr[["reason", "detail"]]
    assert (intr["action"] == "review").all()
    out = tmp_path / "out"
    for path, row in intr.iterrows():
        assert row["relabeled_to"].startswith(f"{a}/")
        assert (out / row["relabeled_to"]).read_bytes() == (data / path).read_bytes()
    assert summary["output_files"]["relabeled"] == len(moved)
    m2, _ = run(data, tmp_path / "out2", workspace)
    assert "relabeled_to" not in m2
    assert len(list((tmp_path / "out2" / a).glob("*.jpg"))) == N - N // 2


def test_even_split_with_no_other_evidence_goes_to_review(shared_data, tmp_path, workspace):
    """A folder of 10 photos of one person and 10 of another, neither found elsewhere: nothing
    says which is the folder's person, so both groups go to review (none kept as the folder's
    identity, none flagged as belonging elsewhere)."""
    a, b, *rest = PEOPLE
    data = tmp_path / "data"
    fill(data / "mixed", photos(shared_data, a, 0, 10) + photos(shared_data, b, 0, 10))
    for p in rest:
        fill(data / p, photos(shared_data, p))
    m, summary = run(data, tmp_path / "out", workspace)
    mixed = m[m["identity"] == "mixed"]
    assert (mixed["reason"] == "mislabeled").sum() == 0
    review = mixed["reason"] == "ambiguous_identity"
    assert review.mean() >= 0.8, mixed[["path", "action", "reason"]]
    assert (mixed.loc[review, "action"] == "review").all()
    for person in (a, b):  # review reaches both people: neither group was picked as the folder's
        assert review[mixed["path"].str.contains(person.replace("_", " "))].mean() >= 0.8
    assert summary["identities_emptied"] == 0


def test_identical_images_across_many_identities_empty_none(shared_data, tmp_path, workspace):
    """Five folders holding the same six files (and nothing else): every identity keeps faces;
    nothing is removed as a duplicate of another folder's copy."""
    data = tmp_path / "data"
    same = photos(shared_data, PEOPLE[0], 0, 6)
    for k in range(5):
        fill(data / f"person{k}", same)
    for p in PEOPLE[1:3]:
        fill(data / p, photos(shared_data, p))
    m, summary = run(data, tmp_path / "out", workspace)
    assert summary["identities_emptied"] == 0
    copies = m[m["identity"].str.startswith("person")]
    assert not (copies["action"] == "remove").any(), copies[["path", "action", "reason"]]
    assert copies.groupby("identity")["action"].apply(lambda a: a.isin(["keep", "review"]).all()).all()
    assert (copies["reason"] != "exact_duplicate").all()


def test_people_close_together_are_split_by_their_mean_faces(shared_data, tmp_path, workspace, monkeypatch):
    """yaleB06's folder with 40% of its photos yaleB09's (moved, no copies): one lighting rig and
    aligned crops put these two people at about 0.33 average cosine, above the absolute split cut,
    so the absolute cut alone keeps them as one group and the intruders stay; the mean-face cut
    (NORM) splits them and flags the intruders mislabeled, belonging to yaleB09."""
    from facesieve.select import identity

    yale = shared_data / "yaleB_cropped10"
    own = sorted((yale / "yaleB06").glob("*.pgm"))[::2]
    other = sorted((yale / "yaleB09").glob("*.pgm"))
    data = tmp_path / "data"
    fill(data / "yaleB06", own)
    fill(data / "yaleB06", other[1::3], prefix="from_09_")
    fill(data / "yaleB09", other[0::3] + other[2::3])
    for p in ("yaleB01", "yaleB03"):
        fill(data / p, sorted((yale / p).glob("*.pgm"))[::3])

    def intruders(m):
        return m[m["path"].str.startswith("yaleB06/from_09_") & (m["reason"] != "no_face")]

    m, summary = run(data, tmp_path / "out", workspace)
    intr = intruders(m)
    assert len(intr) >= 15
    assert ((intr["reason"] == "mislabeled") & (intr["belongs_to"] == "yaleB09")).mean() >= 0.9, intr[["path", "reason", "detail"]]
    own_rows = m[(m["identity"] == "yaleB06") & ~m["path"].str.contains("from_09_") & (m["reason"] != "no_face")]
    assert (own_rows["action"] == "keep").mean() >= 0.9
    assert summary["identities_emptied"] == 0
    # the absolute cut alone (a 3-tuple: no mean-face cut) leaves most intruders in place
    monkeypatch.setitem(identity.CUTS, "sface", identity.CUTS["sface"][:3])
    m2, _ = run(data, tmp_path / "out2", workspace)
    assert (intruders(m2)["action"] == "keep").mean() >= 0.5


def test_guard_gives_back_an_identity_emptied_by_removals():
    """protect_identities: an identity whose every face was removed by an identity decision gets
    them back (the decision kept in detail); review is not emptying; other reasons are not touched."""
    from facesieve.decide import KEEP, initial_decisions, protect_identities

    d = initial_decisions(pd.DataFrame({"status": ["ok"] * 5, "reason": [""] * 5}))
    d["action"] = ["remove", "remove", "review", "remove", KEEP]
    d["reason"] = ["mislabeled", "mislabeled", "ambiguous_identity", "near_duplicate", "kept"]
    ids = np.array(["x", "x", "y", "z", "z"])
    assert protect_identities(d, ids, np.ones(5, bool)) == ["x"]
    assert d["action"].tolist() == [KEEP, KEEP, "review", "remove", KEEP]
    assert d["detail"][0].startswith("kept so that x is not emptied; was mislabeled")


def test_photos_of_people_in_no_folder_misfiled_into_tight_folders_are_flagged(shared_data, tmp_path, workspace, monkeypatch):
    """Three yaleB folders (one lighting rig, aligned crops) each get one photo of somebody who is
    in no folder (two ORL shots, one pins_web photo). Such a face is far from every face here, so
    its nearest ones are whoever it is least far from, often its own folder's: counted as
    neighbours, they told the outlier rule it was the folder's person and it was kept. They are
    under SFace's verification threshold, so they say nothing, and the face is flagged."""
    data = tmp_path / "data"
    yale = shared_data / "yaleB_cropped10"
    for person in ("yaleB01", "yaleB02", "yaleB03"):
        fill(data / person, sorted((yale / person).glob("*.pgm"))[:20])
    strangers = {"yaleB01": shared_data / "pins_web" / "Adriana_Lima" / "Adriana Lima103_5.jpg",
                 "yaleB02": shared_data / "orl_att40" / "s26" / "05.pgm",
                 "yaleB03": shared_data / "orl_att40" / "s21" / "05.pgm"}
    for person, f in strangers.items():
        shutil.copy2(f, data / person / f"stranger_{f.parent.name}_{f.name}")

    def flagged(m: pd.DataFrame) -> tuple[set, int]:
        out = m[m["reason"] == "outlier"]
        names = set(out["path"].map(lambda p: Path(p).name))
        return {n for n in names if n.startswith("stranger_")}, len(names - {n for n in names if n.startswith("stranger_")})

    m, _ = run(data, tmp_path / "out", workspace)
    found, true_flagged = flagged(m)
    assert len(found) == 3
    assert true_flagged <= 1
    monkeypatch.setattr("facesieve.pipeline.match_floor", lambda embedder: None)
    m, _ = run(data, tmp_path / "out_before", workspace)
    found_before, true_before = flagged(m)
    assert len(found_before) < 3 and true_before == true_flagged


# ----------------------------------------------------------------------------- the pure rules


def unit(rng, d=32, n=1):
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def cluster(rng, centre, n, spread=0.35):
    x = centre + spread * rng.standard_normal((n, centre.shape[1])) / np.sqrt(centre.shape[1])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_copy_groups_span_identities_only():
    g = copy_groups(["h1", "h1", "h2", "h2", "", ""], ["", "", "", "", "", ""], ["a", "b", "a", "a", "a", "b"])
    assert g[0] == g[1] >= 0 and g[2] == g[3] == -1 and g[4] == g[5] == -1
    g = copy_groups(["", "", "x"], ["", "", ""], ["a", "b", "b"], pairs=([0], [1]))
    assert g[0] == g[1] >= 0 and g[2] == -1


def test_contaminated_folder_and_copies_by_fit():
    """Synthetic check of the rules: B = 20 of its own + 12 copies of A's photos: the copies in B
    are mislabeled (A), A's copies kept; an even split with nothing else goes to review."""
    rng = np.random.default_rng(0)
    ca, cb, cc, cd = unit(rng, n=4)
    A, B = cluster(rng, ca[None], 20), cluster(rng, cb[None], 20)
    E = np.vstack([A, B, A[:12]]).astype(np.float32)
    ids = np.array(["A"] * 20 + ["B"] * 32)
    copies = copy_groups([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)] + [f"a{i}" for i in range(12)],
                         [""] * 52, ids)
    r = identity_decisions(E, ids, copies, threshold=0.35)
    assert (r["verdict"][:12] == "copy_kept").all() and (r["verdict"][12:20] == "identity").all()
    assert (r["verdict"][20:40] == "identity").all()
    assert (r["verdict"][40:] == "mislabeled").all() and (r["belongs_to"][40:] == "A").all()
    mixed = np.vstack([cluster(rng, cc[None], 10), cluster(rng, cd[None], 10)]).astype(np.float32)
    r = identity_decisions(mixed, np.array(["M"] * 20), threshold=0.35)
    assert (r["verdict"] == "ambiguous").all()
    # a third, small group in an evenly split folder is not an outlier of either: nobody named the
    # folder's person, so it goes to review with the rest
    third = np.vstack([mixed, cluster(rng, unit(rng), 3)]).astype(np.float32)
    r = identity_decisions(third, np.array(["M"] * 23), threshold=0.35)
    assert (r["group"][20:] != r["group"][0]).all() and (r["group"][20:] != r["group"][10]).all()
    assert (r["verdict"] == "ambiguous").all()


def test_split_by_mean_faces_reads_each_group_against_its_own_tightness():
    """Two tight groups whose faces average 0.33 to each other (above the absolute cut 0.30, below
    SFace's verification threshold, like two yaleB people) but whose mean faces are at cosine
    0.43: one group without the mean-face cut, two with it; one loose person (web photos) stays
    one group with it."""
    rng = np.random.default_rng(2)
    shared, ea, eb = unit(rng, n=3)
    X = np.vstack([cluster(rng, (0.55 * shared + 0.835 * e)[None], 15, spread=0.6) for e in (ea, eb)])
    assert 0.30 < (X[:15] @ X[15:].T).mean() < 0.363
    assert len(np.unique(split_folder(X, 0.30, norm=None))) == 1
    lab = split_folder(X, 0.30, norm=0.55)
    assert len(np.unique(lab)) == 2 and len(np.unique(lab[:15])) == 1 and len(np.unique(lab[15:])) == 1
    loose = cluster(rng, unit(rng), 40, spread=1.0)
    assert (np.bincount(split_folder(loose, 0.30, norm=0.55)) >= 3).sum() == 1


def test_two_looks_the_embedder_calls_one_person_are_not_split():
    """Two tight groups averaging 0.45 to each other (two looks of one person: above SFace's own
    verification threshold 0.363) with mean faces at cosine ~0.5: the mean-face cut alone would
    split them; the ceiling `same` keeps them one group."""
    rng = np.random.default_rng(2)
    shared, ea, eb = unit(rng, n=3)
    X = np.vstack([cluster(rng, (0.67 * shared + 0.74 * e)[None], 15, spread=0.6) for e in (ea, eb)])
    assert (X[:15] @ X[15:].T).mean() > 0.363
    assert len(np.unique(split_folder(X, 0.30, norm=0.55, same=1.0))) == 2
    assert len(np.unique(split_folder(X, 0.30, norm=0.55))) == 1


def test_one_person_in_two_poses_keeps_the_folder(shared_data, tmp_path, workspace, monkeypatch):
    """ORL s31: five frontal and five turned shots of one man, 0.48 average cosine between the
    two sets, mean faces at 0.53 (under the mean-face cut). Without the ceiling the folder split
    5/5 and all ten went to review (nothing says which half is s31); with it s31 is one person
    and nothing of it goes to review."""
    from facesieve.select import identity

    orl = shared_data / "orl_att40"
    data = tmp_path / "data"
    for p in ("s31", "s01", "s02", "s03"):
        fill(data / p, sorted((orl / p).glob("*.pgm")))
    m, summary = run(data, tmp_path / "out", workspace)
    s31 = m[m["identity"] == "s31"]
    assert len(s31) == 10
    assert (s31["reason"] != "ambiguous_identity").all(), s31[["path", "reason", "detail"]]
    assert (m["reason"] != "ambiguous_identity").all()
    monkeypatch.setitem(identity.CUTS, "sface", identity.CUTS["sface"][:4])  # (split, match, even, norm): no ceiling
    m2, _ = run(data, tmp_path / "out2", workspace)
    assert (m2.loc[m2["identity"] == "s31", "reason"] == "ambiguous_identity").sum() >= 8


def test_outlier_rule_keeps_an_odd_photo_that_still_fits_its_person():
    """A face far from its identity's centre with other labels for neighbours is an outlier only
    when its average fit to its identity is under max_fit of the identity's own: one that still
    averages most of it is an odd photo of the person, not someone else."""
    from facesieve.select.outliers import DEFAULT_MAX_FIT, outlier_scores

    rng = np.random.default_rng(3)
    ca, cb = unit(rng, n=2)
    A = cluster(rng, ca[None], 30, spread=0.5)
    B = cluster(rng, cb[None], 30, spread=0.5)
    odd = 0.55 * ca + 0.83 * cb  # half A, half B
    stranger = 0.05 * ca + 0.99 * cb
    E = np.vstack([A, odd[None] / np.linalg.norm(odd), stranger[None] / np.linalg.norm(stranger), B]).astype(np.float32)
    ids = np.array(["A"] * 32 + ["B"] * 30)
    r = outlier_scores(E, ids, max_fit=None)
    assert r["is_outlier"][30] and r["is_outlier"][31]
    assert r["fit_ratio"][31] < DEFAULT_MAX_FIT <= r["fit_ratio"][30]
    r = outlier_scores(E, ids)
    assert not r["is_outlier"][30] and r["is_outlier"][31]


def test_a_stranger_whose_nearest_faces_are_no_match_is_flagged():
    """A face of nobody in the dataset whose nearest faces are its own folder's, all at cosines
    under the embedder's verification threshold: those neighbours do not say it is the folder's
    person, so with the floor it is an outlier; without it, the neighbour-label test kept it. An
    odd photo of the person whose neighbours are matches stays kept either way."""
    from facesieve.select.identity import SAME, match_floor
    from facesieve.select.outliers import outlier_scores

    rng = np.random.default_rng(5)
    ca, cb = unit(rng, n=2)
    cb -= (cb @ ca) * ca
    cb /= np.linalg.norm(cb)
    r = unit(rng)[0]
    r -= (r @ ca) * ca + (r @ cb) * cb
    r /= np.linalg.norm(r)
    q = unit(rng)[0]
    q -= (q @ ca) * ca + (q @ cb) * cb + (q @ r) * r
    q /= np.linalg.norm(q)
    stranger = 0.2 * ca + np.sqrt(1 - 0.2**2) * r  # nearer A than B, a match to nobody
    odd = 0.75 * ca + np.sqrt(1 - 0.75**2) * q  # A's person, far from A's centre
    A, B = cluster(rng, ca[None], 30, spread=0.4), cluster(rng, cb[None], 30, spread=0.4)
    E = np.vstack([A, stranger[None], odd[None], B]).astype(np.float32)
    ids = np.array(["A"] * 32 + ["B"] * 30)
    assert float((E[:30] @ E[30]).max()) < SAME <= float((E[:30] @ E[31]).max())
    before = outlier_scores(E, ids)
    after = outlier_scores(E, ids, min_neighbour_sim=match_floor("sface"))
    assert before["knn_same_share"][30] == 1.0 and not before["is_outlier"][30]
    assert after["knn_same_share"][30] == 0.0 and after["is_outlier"][30]
    assert not before["is_outlier"][31] and not after["is_outlier"][31]
    assert int(after["is_outlier"].sum()) == 1
    assert match_floor("sface") == SAME and match_floor("dlib") is None


def test_a_face_of_nobody_in_the_dataset_is_not_given_to_a_folder():
    """A lone face of a third person in A's folder fits B a little better than A (B is not far
    from it, A is very far): still nobody's, so not `mislabeled` into B; a face of B's person in A
    is."""
    rng = np.random.default_rng(1)
    ca, cb = unit(rng, n=2)
    a_dir = ca - (ca @ cb) * cb  # Gram-Schmidt: B's direction, A's apart from B's, nobody's
    a_dir /= np.linalg.norm(a_dir)
    r = unit(rng)[0]
    r -= (r @ cb) * cb + (r @ a_dir) * a_dir
    r /= np.linalg.norm(r)
    stranger = 0.2 * cb - 0.25 * a_dir + np.sqrt(1 - 0.2**2 - 0.25**2) * r
    A, B = cluster(rng, ca[None], 15), cluster(rng, cb[None], 15)
    E = np.vstack([A, stranger[None], cluster(rng, cb[None], 1), B]).astype(np.float32)
    ids = np.array(["A"] * 17 + ["B"] * 15)
    fit_a, fit_b = float(E[:15].mean(axis=0) @ E[15]), float(E[17:].mean(axis=0) @ E[15])
    assert fit_b - fit_a >= 0.1 and fit_b < 0.35  # closer to B by the margin, yet not B's person
    r = identity_decisions(E, ids, threshold=0.35)
    assert r["verdict"][15] != "mislabeled" and r["belongs_to"][15] == ""
    assert r["verdict"][16] == "mislabeled" and r["belongs_to"][16] == "B"


def test_edited_copy_under_another_identity_is_found_by_the_face_crop_test(shared_data, tmp_path, workspace):
    """One of A's photos re-published under B mirrored, reduced and re-saved as JPEG, its embedding
    moved below the cross-identity cosine: the face-crop test still calls it A's photo, so the copy
    in B is removed as mislabeled in favour of A's own (without the test it would only be a face
    that fits A better, sent to review)."""
    from PIL import Image

    from facesieve.imaging import load_rgb

    a, b, *rest = PEOPLE
    data = tmp_path / "data"
    for p in PEOPLE:
        fill(data / p, photos(shared_data, p))
    source = photos(shared_data, a)[3]
    rgb = load_rgb(source)
    h, w = rgb.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(rgb[:, ::-1])).resize((int(w * 0.7), int(h * 0.7)), Image.BILINEAR)
    im.save(data / b / "reposted.jpg", quality=70)
    m, summary = run(data, tmp_path / "out", workspace)
    row = m.set_index("path").loc[f"{b}/reposted.jpg"]
    assert (row["action"], row["reason"], row["belongs_to"]) == ("remove", "mislabeled", a), row[["action", "reason", "detail"]]
    assert row["duplicate_of"] == f"{a}/{source.name}"
    assert (m[m["identity"] == a]["action"] == "keep").all()
