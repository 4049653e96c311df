"""Image decoding (facesieve.imaging) and the dataset scan (facesieve.dataset) on real photos."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from facesieve.dataset import COLUMNS, empty_identities, make_image_id, read_list_file, scan
from facesieve.errors import UsageError
from facesieve.imaging import (
    IMAGE_EXTENSIONS,
    DecodeError,
    dhash,
    hamming,
    image_hashes,
    load_rgb,
    phash,
    pixel_hash,
    sniff_format,
)

try:
    from tests.badset import CASES, EMPTY_IDENTITIES, HIDDEN, SOURCES, build_bad_dataset
except ImportError:  # tests/ on sys.path (pytest's rootdir insertion)
    from badset import CASES, EMPTY_IDENTITIES, HIDDEN, SOURCES, build_bad_dataset


@pytest.fixture(scope="module")
def bad(tmp_path_factory, shared_data) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("bad") / "dataset"
    return root, build_bad_dataset(root, shared_data)


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------------------------- load_rgb


@pytest.mark.parametrize(
    "case, reason",
    [("empty", "empty_file"), ("truncated", "truncated"), ("text_as_jpg", "not_an_image"), ("readme", "not_an_image")],
)
def test_bad_files_raise_with_reason(bad, case, reason):
    root, _ = bad
    with pytest.raises(DecodeError) as ei:
        load_rgb(root / CASES[case])
    assert ei.value.reason == reason
    assert str(root / CASES[case]) in str(ei.value)


def test_every_good_file_decodes_to_rgb(bad):
    root, kinds = bad
    good = [rel for rel, k in kinds.items() if k in ("ok", "no_face", "outside_identity_folder")]
    assert len(good) >= 30
    for rel in good:
        a = load_rgb(root / rel)
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3, rel
        assert a.flags.c_contiguous and a.flags.writeable, rel
        assert a.std() > 10, rel  # real content, not a blank conversion


def test_webp_named_jpg_is_read_by_content(bad, shared_data):
    root, _ = bad
    p = root / CASES["webp_as_jpg"]
    assert sniff_format(p) == "WEBP"
    a = load_rgb(p)
    assert a.shape == (1800, 1350, 3)
    assert np.array_equal(a, decoded(shared_data / "deepface13/person03/img47.jpg"))


def test_upper_case_extension(bad):
    root, _ = bad
    a = load_rgb(root / CASES["upper_ext"])
    assert a.shape == (1050, 750, 3)


@pytest.mark.parametrize("case", ["exif6", "exif8"])
def test_exif_orientation_restores_upright(bad, shared_data, case):
    root, _ = bad
    p = root / CASES[case]
    with Image.open(p) as raw:
        assert raw.getexif()[0x0112] in (6, 8)
        raw_w, raw_h = raw.size
    upright = decoded(shared_data / SOURCES[case])
    a = load_rgb(p)
    assert a.shape[:2] == (raw_w, raw_h)  # (h, w) swapped against the stored pixels
    assert a.shape == upright.shape
    diff = np.abs(a.astype(int) - upright).mean()
    flipped = np.abs(a[::-1, ::-1].astype(int) - upright).mean()  # turned the wrong way round
    assert diff < 3.0 and flipped > 20.0, (diff, flipped)


def test_grey16_keeps_its_dynamic_range(bad, shared_data):
    root, _ = bad
    p = root / CASES["grey16"]
    with Image.open(p) as im:
        assert im.mode.startswith("I")
        v16 = np.asarray(im).astype(np.int64)
        naive = np.asarray(im.convert("L"))
    a = load_rgb(p)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])
    assert np.array_equal(a[..., 0], np.rint(v16 * 255 / 65535).astype(np.uint8))
    g = a[..., 0]
    assert len(np.unique(g)) > 100 and int(g.max()) - int(g.min()) > 200
    assert np.isin(g, (0, 255)).mean() < 0.05
    assert (naive == 255).mean() > 0.9  # what clipping would have given
    src = decoded(shared_data / SOURCES["grey16"])[..., 0]
    assert np.abs(g.astype(int) - src).max() <= 1


def test_rgb16_png(bad, shared_data):
    root, _ = bad
    a = load_rgb(root / CASES["rgb16"])
    assert np.array_equal(a, decoded(shared_data / SOURCES["rgb16"]))


def test_rgba_composited_over_white(bad, shared_data):
    root, _ = bad
    p = root / CASES["rgba"]
    with Image.open(p) as im:
        assert im.mode == "RGBA"
        rgba = np.asarray(im).astype(np.int64)
    a = load_rgb(p)
    assert a.shape == rgba.shape[:2] + (3,)
    alpha = rgba[..., 3]
    assert (a[alpha == 0] == 255).all()
    assert np.array_equal(a[alpha == 255], rgba[alpha == 255][:, :3])
    part = (alpha > 0) & (alpha < 255)
    assert part.sum() > 100
    expect = (rgba[..., :3] * alpha[..., None] + 255 * (255 - alpha[..., None]) + 127) // 255
    assert np.array_equal(a[part], expect[part])


def test_pgm_grey(bad, shared_data):
    root, _ = bad
    a = load_rgb(root / CASES["pgm"])
    assert a.shape == (112, 92, 3)
    src = np.asarray(Image.open(shared_data / "orl_att40/s01/01.pgm"))
    assert np.array_equal(a[..., 1], src)


def _save(im: Image.Image, path: Path, fmt: str, **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def test_other_modes(tmp_path, shared_data):
    face = Image.open(shared_data / "seed_vggface/dataset/person2/0.jpg").convert("RGB")
    grey = face.convert("L")
    g = np.asarray(grey)

    # palette with a transparent index -> that colour becomes white
    pal = face.quantize(16)
    pal.info["transparency"] = 0
    a = load_rgb(_save(pal, tmp_path / "p.png", "PNG", transparency=0))
    idx = np.asarray(pal)
    assert (a[idx == 0] == 255).all() and (idx == 0).any()

    # grey + alpha
    la = Image.merge("LA", (grey, Image.new("L", grey.size, 128)))
    a = load_rgb(_save(la, tmp_path / "la.png", "PNG"))
    assert np.array_equal(a[..., 0], ((g.astype(int) * 128 + 255 * 127 + 127) // 255).astype(np.uint8))

    # CMYK JPEG (no profile): Pillow's formula
    cmyk = face.convert("CMYK")
    a = load_rgb(_save(cmyk, tmp_path / "c.jpg", "JPEG", quality=95))
    assert a.shape == (150, 150, 3) and np.abs(a.astype(int) - np.asarray(face)).mean() < 6

    # 1-bit
    a = load_rgb(_save(grey.convert("1"), tmp_path / "b.png", "PNG"))
    assert set(np.unique(a)) <= {0, 255} and len(np.unique(a)) == 2

    # 16-bit big-endian TIFF and a 16-bit PGM
    v16 = (g.astype(np.uint16) * 257).astype(">u2")
    tif = Image.frombytes("I;16B", grey.size, v16.tobytes())
    assert np.array_equal(load_rgb(_save(tif, tmp_path / "g.tif", "TIFF"))[..., 0], g)
    pgm = tmp_path / "g16.pgm"
    pgm.write_bytes(b"P5\n%d %d\n65535\n" % grey.size + v16.tobytes())
    with Image.open(pgm) as im:
        assert im.mode == "I"
    assert np.array_equal(load_rgb(pgm)[..., 0], g)
    pgm12 = tmp_path / "g12.pgm"  # maxval 4095: Pillow rescales to 65535 first
    pgm12.write_bytes(b"P5\n%d %d\n4095\n" % grey.size + ((g.astype(np.uint32) * 4095 + 127) // 255).astype(">u2").tobytes())
    assert np.abs(load_rgb(pgm12)[..., 0].astype(int) - g).max() <= 1

    # float TIFF in 0..1
    f = Image.fromarray((g / 255.0).astype(np.float32), "F")
    assert np.abs(load_rgb(_save(f, tmp_path / "f.tif", "TIFF"))[..., 0].astype(int) - g).max() <= 1

    # multi-frame GIF: the first frame
    frames = [Image.new("RGB", (40, 30), c) for c in ((200, 10, 10), (10, 200, 10), (10, 10, 200))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)
    a = load_rgb(gif)
    assert a.shape == (30, 40, 3) and a[..., 0].mean() > 150 and a[..., 1].mean() < 60

    # BMP named .png
    bmp = _save(face, tmp_path / "actually_bmp.png", "BMP")
    assert sniff_format(bmp) == "BMP"
    assert np.array_equal(load_rgb(bmp), np.asarray(face))


def _png_bomb(path: Path, side: int) -> None:
    """A 1-bit PNG claiming side x side pixels, a few kB on disk."""
    row = b"\x00" + bytes((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused(tmp_path, shared_data):
    bomb = tmp_path / "bomb.png"
    _png_bomb(bomb, 14000)  # 196 Mpx: over twice Pillow's limit
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DecodeError) as ei:
        load_rgb(bomb)
    assert ei.value.reason == "too_large"
    with pytest.raises(DecodeError) as ei:
        load_rgb(shared_data / "orl_att40/s01/01.pgm", max_pixels=1000)
    assert ei.value.reason == "too_large"


def test_missing_unsupported_and_damaged(tmp_path, shared_data):
    cases = {}
    cases["missing_file"] = tmp_path / "nope.jpg"
    cases["not_a_file"] = tmp_path
    heic = tmp_path / "photo.jpg"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200))
    cases["unsupported_format"] = heic
    webp = tmp_path / "cut.webp"
    data = (shared_data / "deepface13/person03/img47.jpg").read_bytes()
    webp.write_bytes(data[: len(data) // 2])
    cases["truncated"] = webp
    png = tmp_path / "cut.png"
    buf = io.BytesIO()
    Image.open(shared_data / "seed_vggface/dataset/person2/1.jpg").save(buf, "PNG")
    png.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    cases["truncated "] = png
    garbage = tmp_path / "noise.png"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    cases["not_an_image"] = garbage
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    cases["corrupt"] = corrupt
    for reason, p in cases.items():
        with pytest.raises(DecodeError) as ei:
            load_rgb(p)
        assert ei.value.reason == reason.strip(), (p, ei.value)
    assert sniff_format(heic) == "HEIF"


# ------------------------------------------------------------------------------------------- hashes


def test_pixel_hash_same_pixels_any_format(tmp_path, shared_data):
    face = Image.open(shared_data / "seed_vggface/dataset/person1/0002_01.jpg").convert("RGB")
    png, bmp = tmp_path / "a.png", tmp_path / "a.bmp"
    face.save(png)
    face.save(bmp)
    assert png.read_bytes() != bmp.read_bytes()
    a, b = load_rgb(png), load_rgb(bmp)
    assert pixel_hash(a) == pixel_hash(b)
    c = a.copy()
    c[100, 100, 1] ^= 1
    assert pixel_hash(c) != pixel_hash(a)
    assert pixel_hash(a.reshape(112, 448, 3)) != pixel_hash(a)  # same bytes, other shape
    assert pixel_hash(a[:, ::-1]) == pixel_hash(np.ascontiguousarray(a[:, ::-1]))


def _variants(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=50)
    q50 = np.asarray(Image.open(buf).convert("RGB"))
    half = np.asarray(Image.fromarray(a).resize((a.shape[1] // 2, a.shape[0] // 2), Image.Resampling.LANCZOS))
    return q50, half


PEOPLE = [f"deepface13/person{i:02d}" for i in range(1, 14)] + ["seed_vggface/dataset/person1", "seed_vggface/dataset/person2"]


def test_perceptual_hashes_robust_and_discriminative(shared_data):
    firsts = []
    worst = {"phash": [0, 0], "dhash": [0, 0]}
    for folder in PEOPLE:
        f = sorted((shared_data / folder).iterdir())[0]
        a = load_rgb(f)
        q50, half = _variants(a)
        for name, fn in (("phash", phash), ("dhash", dhash)):
            h = fn(a)
            assert 0 <= h < 2**64
            worst[name][0] = max(worst[name][0], hamming(h, fn(q50)))
            worst[name][1] = max(worst[name][1], hamming(h, fn(half)))
        firsts.append(image_hashes(a)[:2])
        assert firsts[-1] == (phash(a), dhash(a))
    cross_p = [hamming(x[0], y[0]) for x, y in itertools.combinations(firsts, 2)]
    cross_d = [hamming(x[1], y[1]) for x, y in itertools.combinations(firsts, 2)]
    print(f"\nworst same-photo distance (q50, 0.5x): {worst}; different people: "
          f"phash min {min(cross_p)} median {np.median(cross_p)}, dhash min {min(cross_d)} median {np.median(cross_d)}")
    assert worst["phash"][0] <= 5 and worst["phash"][1] <= 5
    assert worst["dhash"][0] <= 5 and worst["dhash"][1] <= 5
    assert min(cross_p) >= 16 and np.median(cross_p) >= 26
    assert min(cross_d) >= 10 and np.median(cross_d) >= 24


def test_hash_details():
    flat = np.full((50, 60, 3), 128, np.uint8)
    assert dhash(flat) == 0
    grad = np.tile(np.arange(0, 240, 4, dtype=np.uint8), (50, 1))
    assert dhash(grad) == 2**64 - 1  # every pixel brighter than its left neighbour
    assert dhash(np.dstack([grad] * 3)) == dhash(grad) == dhash(grad[..., None])
    assert hamming(-1, 2**64 - 1) == 0 and hamming(0, -1) == 64  # int64-stored hashes work
    with pytest.raises(ValueError):
        phash(np.zeros((10, 10, 3), np.float32))


# --------------------------------------------------------------------------------------------- scan


EXPECTED_SCAN = {  # expected kind -> (status, reason) at scan time
    "ok": ("ok", ""),
    "no_face": ("ok", ""),
    "truncated": ("ok", ""),  # found later, when decoding
    "empty_file": ("error", "empty_file"),
    "not_an_image": ("error", "not_an_image"),
    "outside_identity_folder": ("skipped", "outside_identity_folder"),
    "not_an_image_extension": ("skipped", "not_an_image_extension"),
}


def test_scan_bad_dataset(bad):
    root, kinds = bad
    df = scan(root)
    assert list(df.columns) == COLUMNS
    assert list(df["path"]) == sorted(kinds)  # one row per file, sorted, hidden files ignored
    for h in HIDDEN:
        assert (root / h).exists() and h not in set(df["path"])
    by = df.set_index("path")
    for rel, kind in kinds.items():
        assert (by.at[rel, "status"], by.at[rel, "reason"]) == EXPECTED_SCAN[kind], rel
    assert by.at[CASES["nested"], "identity"] == "seed_person1"
    assert by.at[CASES["unicode"], "identity"] == "José Müller"
    assert by.at[CASES["outside"], "identity"] == "" and by.at[CASES["readme"], "identity"] == ""
    assert by.at[CASES["upper_ext"], "format"] == "JPEG"
    assert by.at[CASES["webp_as_jpg"], "format"] == "WEBP"
    assert by.at[CASES["pgm"], "format"] == "PPM"
    assert by.at[CASES["grey16"], "format"] == "PNG"
    assert by.at[CASES["empty"], "sha256"] == "" and by.at[CASES["empty"], "size"] == 0
    for rel in (CASES["truncated"], CASES["unicode"], CASES["outside"]):
        data = (root / rel).read_bytes()
        assert by.at[rel, "sha256"] == hashlib.sha256(data).hexdigest()
        assert by.at[rel, "size"] == len(data)
        assert by.at[rel, "mtime_ns"] == (root / rel).stat().st_mtime_ns
    assert by.at[CASES["readme"], "sha256"] == ""  # non-image files are not hashed
    assert all(df["image_id"] == df["path"].map(make_image_id))
    assert df["image_id"].is_unique
    assert set(df["identity"]) == {"", "José Müller", "orl_s01", "person01", "person03", "person05",
                                   "seed_person1", "seed_person2", "single"}
    pa.Table.from_pandas(df, preserve_index=False)  # storable as Parquet


def test_scan_is_deterministic(bad):
    root, _ = bad
    a = scan(root, threads=1)
    b = scan(root, threads=4)
    assert a.equals(b)
    counts = []
    c = scan(root, hash_files=False, progress=counts.append)
    assert sum(counts) == len(c) and all(n > 0 for n in counts)
    assert (c["sha256"] == "").all()
    assert c.drop(columns="sha256").equals(a.drop(columns="sha256"))


def test_make_image_id_is_stable():
    assert make_image_id("person01/img1.jpg") == hashlib.sha1(b"person01/img1.jpg").hexdigest()[:16]
    assert make_image_id(Path("person01") / "img1.jpg") == make_image_id("person01/img1.jpg")
    assert len(make_image_id("José Müller/a.jpg")) == 16


def test_empty_identities(bad):
    root, _ = bad
    assert empty_identities(root) == EMPTY_IDENTITIES


def test_flat_layout(bad):
    root, kinds = bad
    df = scan(root, layout="flat").set_index("path")
    assert (df["identity"] == "").all()
    assert df.at[CASES["outside"], "status"] == "ok"
    assert df.at[CASES["nested"], "status"] == "ok"
    assert df.at[CASES["readme"], "reason"] == "not_an_image_extension"
    with pytest.raises(ValueError):
        scan(root, layout="list")
    with pytest.raises(UsageError):
        scan(root / "no_such_folder")


def test_links_extensions_and_odd_names(tmp_path, shared_data):
    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    shutil.copyfile(shared_data / "orl_att40/s02/01.pgm", root / "a" / "1.pgm")
    (root / "a" / "loop").symlink_to(root)  # a folder link back to the root
    (root / "b").symlink_to(root / "a")  # the same folder twice
    (root / "a" / "link.pgm").symlink_to(shared_data / "orl_att40/s02/02.pgm")
    (root / "a" / "dead.jpg").symlink_to(root / "gone.jpg")
    Image.new("RGB", (8, 8)).save(root / "a" / "anim.gif")
    shutil.copyfile(shared_data / "orl_att40/s02/03.pgm", root / "a" / "noext")
    os.mkfifo(root / "a" / "pipe.jpg")  # must never be opened
    expected = {"a/1.pgm", "a/link.pgm", "a/dead.jpg", "a/anim.gif", "a/noext"}
    bad_name = os.fsencode(str(root / "a")) + b"/caf\xe9.jpg"  # Latin-1 byte, not UTF-8
    try:
        with open(bad_name, "wb") as f:
            f.write((shared_data / "orl_att40/s02/04.pgm").read_bytes())
        expected.add("a/caf\\xe9.jpg")
    except OSError:  # file systems that insist on UTF-8 names
        pass
    df = scan(root)
    by = df.set_index("path")
    assert set(by.index) == expected
    assert by.at["a/link.pgm", "status"] == "ok" and by.at["a/link.pgm", "size"] == 10318
    assert tuple(by.loc["a/dead.jpg", ["status", "reason"]]) == ("error", "broken_symlink")
    assert tuple(by.loc["a/anim.gif", ["status", "reason", "format"]]) == ("skipped", "unsupported_extension", "GIF")
    assert tuple(by.loc["a/noext", ["status", "reason", "format"]]) == ("skipped", "unsupported_extension", "PPM")
    if "a/caf\\xe9.jpg" in expected:
        assert tuple(by.loc["a/caf\\xe9.jpg", ["status", "reason"]]) == ("skipped", "undecodable_filename")
    pa.Table.from_pandas(df, preserve_index=False)


def test_read_list_file(bad, tmp_path):
    root, kinds = bad
    lst = tmp_path / "list.txt"
    lines = [
        "# SDD-FIQA style list",
        CASES["nested"],
        "",
        f"{root / CASES['unicode']}\t7",  # absolute inside the root, label column ignored
        CASES["empty"],
        "person01/not_there.jpg",
        "../elsewhere/x.jpg",
        CASES["nested"],  # listed twice
        "person03/img50.jpg",
    ]
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    df = read_list_file(root, lst, 0)
    assert list(df.columns) == COLUMNS
    assert list(df["path"]) == [CASES["nested"], CASES["unicode"], CASES["empty"], "person01/not_there.jpg",
                                "../elsewhere/x.jpg", "person03/img50.jpg"]
    assert list(df["status"]) == ["ok", "ok", "error", "error", "error", "ok"]
    assert list(df["reason"]) == ["", "", "empty_file", "missing_file", "outside_root", ""]
    assert df["identity"].iloc[0] == "seed_person1" and df["identity"].iloc[5] == "person03"
    assert df["identity"].iloc[1] == "/"  # index 0 of an absolute path is its anchor, as Path.parts says
    by_folder = read_list_file(root, lst, -2)
    assert list(by_folder["identity"]) == ["extra", "José Müller", "person01", "person01", "elsewhere", "person03"]
    with pytest.raises(UsageError, match="out of range"):
        read_list_file(root, lst, 5)
    with pytest.raises(UsageError):
        read_list_file(root, tmp_path / "missing.txt", 0)


def test_extensions_constant():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".tif"} <= IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)
