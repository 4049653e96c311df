"""Builds the "bad-input" dataset: real faces plus every kind of file a scraped dataset contains.

Used by the scan tests and by end-to-end tests. `build_bad_dataset` returns rel_path -> expected
kind, where the kind is the final reason a full run should give that file:

    ok                       decodes and shows one face (tight crops may use the whole-image fallback)
    no_face                  decodes, no face in it
    empty_file, truncated, not_an_image              errors (truncation is found when decoding)
    outside_identity_folder, not_an_image_extension  skipped by the scan

Also built but never in the mapping: hidden files/folders (ignored by the scan) and an empty
identity folder (`EMPTY_IDENTITIES`). `CASES` names the interesting files for tests.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CASES = {
    "readme": "README.txt",
    "outside": "stray_face.jpg",
    "upper_ext": "person01/IMG6.JPG",
    "empty": "person01/empty.jpg",
    "truncated": "person01/truncated.jpg",
    "no_face": "person01/landscape_no_face.jpg",
    "json": "person01/meta.json",
    "webp_as_jpg": "person03/img47.jpg",
    "text_as_jpg": "person03/notes.jpg",
    "exif6": "person05/rotated_exif6.jpg",
    "exif8": "person05/rotated_exif8.jpg",
    "pgm": "orl_s01/01.pgm",
    "grey16": "orl_s01/grey16.png",
    "rgba": "seed_person1/alpha.png",
    "nested": "seed_person1/extra/0010_01.jpg",
    "rgb16": "seed_person2/rgb16.png",
    "single": "single/img25.jpg",
    "unicode": "José Müller/José Müller 1.jpg",
}
# the upright sources of the generated files, relative to the shared data folder
SOURCES = {
    "exif6": "deepface13/person05/img62.jpg",
    "exif8": "deepface13/person05/img17.jpg",
    "grey16": "orl_att40/s01/05.pgm",
    "rgba": "seed_vggface/dataset/person1/0006_01.jpg",
    "rgb16": "seed_vggface/dataset/person2/11.jpg",
    "truncated": "deepface13/person01/img2.jpg",
}
EMPTY_IDENTITIES = ["empty_person"]
HIDDEN = ["person01/.DS_Store", ".facesieve/scan.parquet", "empty_person/.DS_Store"]

# plain copies: dataset path -> shared-data path
_COPIES = {
    "stray_face.jpg": "deepface13/person08/img22.jpg",
    "person01/img5.jpg": "deepface13/person01/img5.jpg",
    "person01/img10.jpg": "deepface13/person01/img10.jpg",
    "person01/img11.jpg": "deepface13/person01/img11.jpg",
    "person01/IMG6.JPG": "deepface13/person01/img6.jpg",
    "person03/img47.jpg": "deepface13/person03/img47.jpg",
    "person03/img50.jpg": "deepface13/person03/img50.jpg",
    "person03/img51.jpg": "deepface13/person03/img51.jpg",
    "person03/img8.jpg": "deepface13/person03/img8.jpg",
    "person05/img16.jpg": "deepface13/person05/img16.jpg",
    "person05/img61.jpg": "deepface13/person05/img61.jpg",
    "orl_s01/01.pgm": "orl_att40/s01/01.pgm",
    "orl_s01/02.pgm": "orl_att40/s01/02.pgm",
    "orl_s01/03.pgm": "orl_att40/s01/03.pgm",
    "orl_s01/04.pgm": "orl_att40/s01/04.pgm",
    "seed_person1/0002_01.jpg": "seed_vggface/dataset/person1/0002_01.jpg",
    "seed_person1/0003_01.jpg": "seed_vggface/dataset/person1/0003_01.jpg",
    "seed_person1/0005_01.jpg": "seed_vggface/dataset/person1/0005_01.jpg",
    "seed_person1/extra/0010_01.jpg": "seed_vggface/dataset/person1/0010_01.jpg",
    "seed_person2/0.jpg": "seed_vggface/dataset/person2/0.jpg",
    "seed_person2/1.jpg": "seed_vggface/dataset/person2/1.jpg",
    "seed_person2/10.jpg": "seed_vggface/dataset/person2/10.jpg",
    "single/img25.jpg": "deepface13/person09/img25.jpg",
    "José Müller/José Müller 1.jpg": "deepface13/person07/img20.jpg",
    "José Müller/José Müller 2.jpg": "deepface13/person07/img21.jpg",
}


def build_bad_dataset(root: Path, shared_data: Path) -> dict[str, str]:
    """Create the dataset under `root` (created if missing) from real photos in `shared_data`."""
    root, shared_data = Path(root), Path(shared_data)
    root.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}

    def dest(rel: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    for rel, src in _COPIES.items():
        shutil.copyfile(shared_data / src, dest(rel))
        kinds[rel] = "ok"
    kinds[CASES["outside"]] = "outside_identity_folder"

    dest(CASES["readme"]).write_text("Bad-input test dataset built by tests/badset.py.\n", encoding="utf-8")
    kinds[CASES["readme"]] = "not_an_image_extension"
    dest(CASES["json"]).write_text('{"source": "test"}\n', encoding="utf-8")
    kinds[CASES["json"]] = "not_an_image_extension"

    dest(CASES["empty"]).write_bytes(b"")
    kinds[CASES["empty"]] = "empty_file"

    data = (shared_data / SOURCES["truncated"]).read_bytes()
    dest(CASES["truncated"]).write_bytes(data[: len(data) // 2])
    kinds[CASES["truncated"]] = "truncated"

    dest(CASES["text_as_jpg"]).write_text("These are notes, not a photo.\n" * 20, encoding="utf-8")
    kinds[CASES["text_as_jpg"]] = "not_an_image"

    kinds[CASES["webp_as_jpg"]] = "ok"  # copied above; its content is WEBP

    Image.fromarray(landscape()).save(dest(CASES["no_face"]), "JPEG", quality=90)
    kinds[CASES["no_face"]] = "no_face"

    for case, orientation in (("exif6", 6), ("exif8", 8)):
        save_exif_rotated(shared_data / SOURCES[case], dest(CASES[case]), orientation)
        kinds[CASES[case]] = "ok"

    grey = np.asarray(Image.open(shared_data / SOURCES["grey16"]).convert("L"))
    save_grey16_png(dest(CASES["grey16"]), grey)
    kinds[CASES["grey16"]] = "ok"

    rgb = np.asarray(Image.open(shared_data / SOURCES["rgb16"]).convert("RGB"))
    save_rgb16_png(dest(CASES["rgb16"]), rgb)
    kinds[CASES["rgb16"]] = "ok"

    rgb = np.asarray(Image.open(shared_data / SOURCES["rgba"]).convert("RGB"))
    Image.fromarray(np.dstack([rgb, oval_alpha(*rgb.shape[:2])]), "RGBA").save(dest(CASES["rgba"]))
    kinds[CASES["rgba"]] = "ok"

    for rel in HIDDEN:
        dest(rel).write_bytes(b"\x00\x01hidden")
    for name in EMPTY_IDENTITIES:
        (root / name / "sub").mkdir(parents=True, exist_ok=True)
    return kinds


def save_exif_rotated(src: Path, dst: Path, orientation: int) -> None:
    """Store the upright photo turned so that EXIF `orientation` (6 or 8) turns it back upright."""
    upright = Image.open(src).convert("RGB")
    turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright.transpose(turn).save(dst, "JPEG", quality=95, exif=exif)


def save_grey16_png(dst: Path, grey8: np.ndarray, seed: int = 0) -> np.ndarray:
    """A real 16-bit grey PNG: the 8-bit face scaled to 0..65535 plus sub-8-bit detail."""
    rng = np.random.default_rng(seed)
    v = grey8.astype(np.int64) * 257 + rng.integers(-100, 101, grey8.shape)
    v16 = np.clip(v, 0, 65535).astype(np.uint16)
    Image.frombytes("I;16", (v16.shape[1], v16.shape[0]), v16.astype("<u2").tobytes()).save(dst, "PNG")
    return v16


def save_rgb16_png(dst: Path, rgb8: np.ndarray) -> np.ndarray:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one, so the chunks are written here)."""
    h, w = rgb8.shape[:2]
    v16 = (rgb8.astype(np.uint16) * 257).astype(">u2")
    raw = b"".join(b"\x00" + v16[i].tobytes() for i in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    Path(dst).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    )
    return v16


def oval_alpha(h: int, w: int) -> np.ndarray:
    """Opaque oval in the middle, fully transparent corners, a soft edge between."""
    y, x = np.mgrid[0:h, 0:w]
    r = np.sqrt(((x - w / 2) / (0.42 * w)) ** 2 + ((y - h / 2) / (0.48 * h)) ** 2)
    return (np.clip((1.15 - r) / 0.15, 0, 1) * 255).astype(np.uint8)


def landscape(h: int = 480, w: int = 640, seed: int = 7) -> np.ndarray:
    """A smooth sky-and-hills picture with a little texture: no face anywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    sky = y / h
    img[..., 0] = 90 + 110 * sky
    img[..., 1] = 150 + 70 * sky
    img[..., 2] = 235 - 20 * sky
    far = h * 0.55 + 30 * np.sin(x / 97.0) + 12 * np.sin(x / 23.0 + 1.0)
    near = h * 0.72 + 40 * np.sin(x / 151.0 + 2.0) + 8 * np.sin(x / 17.0)
    img[y > far] = (70, 110, 80)
    grass = y > near
    img[grass] = np.stack([60 + 0.05 * (y - near), 130 - 0.04 * (y - near), 50 + 0 * y], -1)[grass]
    img += rng.normal(0, 4, (h, w, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ hostile files
# More of what a scraped or hand-made dataset holds, and what an attacker would plant: each case is
# (path, expected), where expected is "ok" (decoded, a face found, a normal decision), or
# (action, reason) for its manifest row, or ("skipped", reason) for a path that can have no row
# and must be listed in OUT/skipped.csv instead.
HOSTILE: dict[str, tuple[str, object]] = {
    "self_symlink": ("person01/self.jpg", ("error", "symlink_loop")),
    "broken_symlink": ("person01/gone.jpg", ("error", "broken_symlink")),
    "link_in_dataset": ("person03/link_to_img5.jpg", "ok"),
    "link_outside": ("person05/outside_link.jpg", "ok"),
    "hardlink": ("person05/hardlink_img16.jpg", "ok"),
    "folder_link_again": ("person05/again", ("skipped", "listed_through_another_path")),
    "fifo": ("person01/pipe.jpg", ("skipped", "not_a_regular_file")),
    "nested_empty_folder": ("person03/empty_sub", ("skipped", "empty_folder")),
    "only_hidden_identity": ("hidden_only", ("skipped", "empty_folder")),
    "html_in_identity": ("person03/notes.html", ("ignore", "not_an_image_extension")),
    "svg_script": ("person03/evil.svg", ("ignore", "not_an_image_extension")),
    "gif_extension": ("person03/anim.gif", ("ignore", "unsupported_extension")),
    "no_extension_image": ("person03/photo", ("ignore", "unsupported_extension")),
    "heif_as_jpg": ("person05/phone.jpg", ("error", "unsupported_format")),
    "zip_as_jpg": ("person05/archive.jpg", ("error", "not_an_image")),
    "jpeg_header_only": ("person05/header_only.jpg", ("error", "corrupt")),
    "png_bomb": ("person05/bomb.png", ("error", "too_large")),
    "tiny_image": ("person05/one_pixel.png", ("remove", "no_face")),
    "trailing_garbage": ("person01/polyglot.jpg", "ok"),
    "jpeg_as_png": ("person01/really_jpeg.png", "ok"),
    "cmyk_jpeg": ("person03/cmyk.jpg", "ok"),
    "palette_png": ("person03/palette.png", "ok"),
    "progressive_jpeg": ("person03/progressive.jpg", "ok"),
    "bmp": ("person05/photo.bmp", "ok"),
    "tiff_multipage": ("person05/pages.tiff", "ok"),
    "bad_exif_orientation": ("person01/exif9.jpg", "ok"),
    "url_chars_name": ("person03/a #1 %20?&.jpg", "ok"),
    "newline_name": ("person03/two\nlines.jpg", "ok"),
    "long_name": ("person05/" + "n" * 240 + ".jpg", "ok"),
    "deep_nesting": ("person01/" + "/".join(f"d{i}" for i in range(12)) + "/deep.jpg", "ok"),
    "folder_named_jpg": ("person05/folder.jpg/inside.jpg", "ok"),
    "emoji_identity": ("😀 smile/img30.jpg", "ok"),
    "identity_of_text_only": ("notes_only/readme.md", ("ignore", "not_an_image_extension")),
    "future_mtime": ("person01/future.jpg", "ok"),
}
HOSTILE_OUTSIDE = "outside_target.jpg"  # written next to the dataset root, linked from inside it


def build_hostile_dataset(root: Path, shared_data: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The bad-input dataset plus HOSTILE: (manifest path -> kind or "action/reason", skipped path
    -> reason), where a kind is build_bad_dataset's."""
    root, shared_data = Path(root), Path(shared_data)
    kinds = build_bad_dataset(root, shared_data)
    rows: dict[str, str] = dict(kinds)
    skipped = {rel: "hidden" for rel in _hidden_entries()}
    skipped.update({name: "empty_folder" for name in EMPTY_IDENTITIES})
    face = shared_data / "deepface13/person02/img12.jpg"

    def dest(case: str) -> Path:
        p = root / HOSTILE[case][0]
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    os.symlink("self.jpg", dest("self_symlink"))
    os.symlink("no_such_file.jpg", dest("broken_symlink"))
    os.symlink("../person01/img5.jpg", dest("link_in_dataset"))
    outside = root.parent / HOSTILE_OUTSIDE
    shutil.copyfile(shared_data / "deepface13/person04/img13.jpg", outside)
    os.symlink(outside, dest("link_outside"))
    os.link(root / "person05/img16.jpg", dest("hardlink"))
    os.symlink("../person05", dest("folder_link_again"))
    os.mkfifo(dest("fifo"))
    dest("nested_empty_folder").mkdir()
    dest("only_hidden_identity").mkdir()
    (root / HOSTILE["only_hidden_identity"][0] / ".keep").write_bytes(b"")
    dest("html_in_identity").write_text("<html><script>fetch('/api/override',{method:'POST'})</script></html>\n")
    dest("svg_script").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n')
    rgb = Image.open(face).convert("RGB")
    small = rgb.resize((rgb.width // 4, rgb.height // 4))
    small.save(dest("gif_extension"), "GIF", save_all=True, append_images=[small.rotate(5)])
    rgb.save(dest("no_extension_image"), "JPEG", quality=85)
    dest("heif_as_jpg").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200)
    dest("zip_as_jpg").write_bytes(b"PK\x03\x04" + b"\x00" * 300)
    jpeg = io.BytesIO()
    rgb.save(jpeg, "JPEG", quality=85)
    dest("jpeg_header_only").write_bytes(jpeg.getvalue()[:300])
    dest("png_bomb").write_bytes(_png_bomb(60000, 60000))
    Image.new("RGB", (1, 1), (128, 100, 90)).save(dest("tiny_image"))
    dest("trailing_garbage").write_bytes(jpeg.getvalue() + b"PK\x03\x04" + os.urandom(2000))
    dest("jpeg_as_png").write_bytes(jpeg.getvalue())
    rgb.convert("CMYK").save(dest("cmyk_jpeg"), "JPEG", quality=90)
    (shared_face2 := Image.open(shared_data / "deepface13/person03/img50.jpg").convert("RGB")).quantize(256).save(dest("palette_png"))
    shared_face2.save(dest("progressive_jpeg"), "JPEG", quality=80, progressive=True)
    Image.open(shared_data / "deepface13/person05/img61.jpg").convert("RGB").save(dest("bmp"), "BMP")
    p5 = Image.open(shared_data / "deepface13/person05/img16.jpg").convert("RGB")
    p5.save(dest("tiff_multipage"), "TIFF", save_all=True, append_images=[p5.rotate(90, expand=True)])
    exif = Image.Exif()
    exif[0x0112] = 9  # not an orientation
    Image.open(shared_data / "deepface13/person01/img11.jpg").convert("RGB").save(dest("bad_exif_orientation"), "JPEG",
                                                                                   quality=90, exif=exif)
    for case, src in (("url_chars_name", "deepface13/person03/img51.jpg"), ("newline_name", "deepface13/person03/img8.jpg"),
                      ("long_name", "deepface13/person05/img61.jpg"), ("deep_nesting", "deepface13/person01/img10.jpg"),
                      ("folder_named_jpg", "deepface13/person05/img16.jpg"), ("emoji_identity", "deepface13/person09/img24.jpg"),
                      ("future_mtime", "deepface13/person01/img11.jpg")):
        shutil.copyfile(shared_data / src, dest(case))
    future = 4102444800  # 2100-01-01
    os.utime(dest("future_mtime"), (future, future))
    dest("identity_of_text_only").write_text("# notes\n")

    for case, (rel, expected) in HOSTILE.items():
        if isinstance(expected, tuple) and expected[0] == "skipped":
            skipped[rel] = expected[1]
        else:
            rows[rel] = expected if isinstance(expected, str) else "/".join(expected)
    return rows, skipped


def _hidden_entries() -> list[str]:
    """The hidden names build_bad_dataset makes, as the scan lists them (a hidden folder once)."""
    out = []
    for rel in HIDDEN:
        parts = rel.split("/")
        hidden_at = next(i for i, p in enumerate(parts) if p.startswith("."))
        entry = "/".join(parts[: hidden_at + 1])
        if entry not in out and not any(entry.startswith(e + "/") for e in EMPTY_IDENTITIES):
            out.append(entry)
    return out


def _png_bomb(w: int, h: int) -> bytes:
    """A small PNG whose header claims w x h pixels (a decompression bomb): one grey row repeated."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * w
    data = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
