"""Image decoding and image fingerprints: one place that turns any file into an upright HxWx3 RGB array.

Files are read by content, never by extension (a WEBP named .jpg decodes). Every failure is a
`DecodeError` with a short machine-friendly `reason`, so a million-image run records a status per
file instead of crashing. Decoding is Pillow only: cv2.imread returns an image for a truncated JPEG
(just a warning on stderr), which is exactly what the faces stage must catch. Pillow's global
LOAD_TRUNCATED_IMAGES is left alone (off), so a cut file raises.

Conversions, so every model sees the same kind of array:
- EXIF (and XMP) orientation is applied, so the array is upright as a viewer shows it.
- grey (L, 1-bit) is repeated into three channels; palette images are expanded.
- alpha (RGBA, LA, PA, palette or grey with a transparent colour) is composited over WHITE: a
  transparent background carries no content, and white is how it is shown on a page; over black
  a cut-out face gets a dark halo a detector can mistake for hair or shadow.
- 16-bit integer (I;16, I;16B, I) is scaled by 255/65535 with rounding (Pillow already rescales PGM
  maxval to 65535). Clipping at 255, as a plain convert("L") does, turns a 16-bit photo white.
  Two guards: integer data outside 0..65535 is min-max stretched, and 16-bit data whose maximum is
  <= 255 is taken to be 8-bit values saved in a 16-bit container (a true 16-bit photo that dark is
  black anyway) and kept as is.
- float (F): 0..1 -> x255, 0..255 as is, anything else min-max stretched; NaN/inf -> 0.
- CMYK goes through its embedded ICC profile to sRGB when it has one, else Pillow's formula.
  ICC profiles of RGB images are not applied (a tagged Adobe RGB photo stays as stored).
- multi-frame files (GIF, animated WEBP/PNG, multi-page TIFF): the first frame.

Fingerprints: `pixel_hash` (exact decoded pixels incl. shape), `dhash` and `phash` (64-bit perceptual
hashes for near-duplicates, both from one area-averaged luma thumbnail; `image_hashes` gives both
and the mirrored image's pHash from one reduction; compare with `hamming`).
"""

from __future__ import annotations

import hashlib
import io
import stat
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff"}
)

HEAD_BYTES = 64  # enough for every magic number below
_MASK64 = (1 << 64) - 1
_DEFAULT = object()


class DecodeError(Exception):
    """A file that cannot be turned into pixels. `reason` is a short key for tables and reports:
    missing_file, unreadable, not_a_file, empty_file, not_an_image, unsupported_format, too_large,
    truncated, corrupt, unsupported_mode."""

    def __init__(self, reason: str, message: str | None = None, path: Path | str | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(message or reason)


# ---------------------------------------------------------------------------------------- sniffing


def _formats_pillow_opens() -> frozenset[str]:
    Image.init()
    return frozenset(Image.OPEN)


DECODABLE_FORMATS: frozenset[str] = _formats_pillow_opens()

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff_bytes(head: bytes) -> str | None:
    """Format from the first bytes of a file (magic numbers only, no Pillow); None when unknown.
    Names follow Pillow's (`Image.format`); HEIF/JXL are named even though Pillow cannot decode them."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456fF" and head[2:3] in b" \t\r\n":
        return "PPM"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand, rest = head[8:12], head[16:]
        if brand in (b"avif", b"avis") or (brand in _HEIF_BRANDS and b"avif" in rest):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JXL"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith(b"qoif"):
        return "QOI"
    return None


def sniff_format(path: Path | str, head: bytes | None = None) -> str | None:
    """Image format of a file by content: magic numbers first, then Pillow's header parsers
    (no pixel decoding). None for empty, unreadable or non-image files."""
    try:
        if head is None:
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
    except OSError:
        return None
    if not head:
        return None
    fmt = sniff_bytes(head)
    if fmt is not None:
        return fmt
    try:  # rarer formats (TGA, ICO, PCX, ...) that Pillow recognises from their header
        with Image.open(path) as im:
            return im.format
    except Exception:  # noqa: BLE001 - any parser failure means "not recognisably an image"
        return None


# ---------------------------------------------------------------------------------------- decoding


def load_rgb(path: Path | str, *, max_pixels: int | None = _DEFAULT) -> np.ndarray:  # type: ignore[assignment]
    """Decode any supported image to an upright HxWx3 uint8 RGB array (C-contiguous, writable).

    `max_pixels` guards against decompression bombs (default: Pillow's `Image.MAX_IMAGE_PIXELS`,
    read at call time; None disables the check here, Pillow's own 2x limit still applies).
    Raises DecodeError (never a bare OSError) for anything that is not a decodable image.
    """
    path = Path(path)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is _DEFAULT else max_pixels
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DecodeError("missing_file", f"{path}: no such file (or a broken link)", path) from None
    except OSError as e:
        raise DecodeError("unreadable", f"{path}: {e.strerror or e}", path) from None
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError("not_a_file", f"{path}: not a regular file", path)
    if st.st_size == 0:
        raise DecodeError("empty_file", f"{path}: file is empty (0 bytes)", path)
    try:
        with Image.open(path) as im:
            if limit is not None and im.width * im.height > limit:
                raise DecodeError(
                    "too_large", f"{path}: {im.width}x{im.height} exceeds the {limit}-pixel limit", path
                )
            _load_pixels(im, path, st.st_size)
            return upright_rgb(im, path)
    except DecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise DecodeError("too_large", f"{path}: {e}", path) from None
    except UnidentifiedImageError:
        raise _unidentified(path) from None
    except PermissionError as e:
        raise DecodeError("unreadable", f"{path}: {e.strerror or e}", path) from None
    except MemoryError:
        raise DecodeError("too_large", f"{path}: not enough memory to decode", path) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError) as e:
        # raised by a header parser inside Image.open: an image we cannot even start to read
        raise _open_failure(path, st.st_size, e) from None


def _open_failure(path: Path, size: int, e: Exception) -> DecodeError:
    fmt = sniff_format(path)
    if fmt is None:
        return DecodeError("not_an_image", f"{path}: not a recognisable image ({e})", path)
    if isinstance(e, EOFError) or "truncated" in str(e) or _riff_shorter_than_declared(fmt, path, size):
        return DecodeError("truncated", f"{path}: {fmt} file is truncated ({e})", path)
    return DecodeError("corrupt", f"{path}: damaged {fmt} header ({e})", path)


def _unidentified(path: Path) -> DecodeError:
    fmt = sniff_format(path)
    if fmt is not None and fmt not in DECODABLE_FORMATS:
        return DecodeError("unsupported_format", f"{path}: {fmt} images cannot be decoded here", path)
    if fmt is not None:
        return DecodeError("corrupt", f"{path}: looks like {fmt} but its header cannot be parsed", path)
    return DecodeError("not_an_image", f"{path}: not an image (content matches no known format)", path)


def _load_pixels(im: Image.Image, path: Path, size: int) -> None:
    """Decode the pixel data, mapping decoder failures to reasons (truncation is told apart)."""
    try:
        im.load()
    except EOFError as e:
        raise DecodeError("truncated", f"{path}: {im.format} data ends early ({e})", path) from None
    except OSError as e:
        msg = str(e)
        if "truncated" in msg or _riff_shorter_than_declared(im.format, path, size):
            raise DecodeError("truncated", f"{path}: {im.format} file is truncated ({msg})", path) from None
        raise DecodeError("corrupt", f"{path}: {im.format} data cannot be decoded ({msg})", path) from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - SyntaxError (PNG CRC), ValueError, struct.error ...
        raise DecodeError("corrupt", f"{path}: {im.format} data cannot be decoded ({type(e).__name__}: {e})", path) from None


def _riff_shorter_than_declared(fmt: str | None, path: Path, size: int) -> bool:
    """WEBP's decoder reports a cut file only as 'could not create decoder object'; the RIFF header
    states the full length, so compare it with the file size."""
    if fmt != "WEBP":
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and int.from_bytes(head[4:8], "little") + 8 > size


def upright_rgb(im: Image.Image, path: Path | str = "") -> np.ndarray:
    """An opened image's pixels as load_rgb gives them (the conversions of the module docstring),
    for a caller that opens the file itself (anchor.reduced_grey decodes a JPEG at a reduced size
    first): anything that reads an image again must see what the faces stage saw."""
    return _to_rgb(_apply_orientation(im), Path(path))


def _apply_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF (or XMP) Orientation tag says. Malformed metadata is ignored: losing
    the orientation is better than losing the image."""
    try:
        ImageOps.exif_transpose(im, in_place=True)  # in place: no copy when nothing to do
    except Exception:  # noqa: BLE001
        pass
    return im


def _to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return _writable(np.asarray(im))
    if mode in ("L", "1"):
        grey = np.asarray(im.convert("L") if mode == "1" else im)
        return _grey_to_rgb(grey)
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _grey_to_rgb(high_depth_to_uint8(np.asarray(im)))
    if _has_alpha(im):
        try:
            rgba = np.asarray(im.convert("RGBA"))
        except ValueError as e:
            raise DecodeError("unsupported_mode", f"{path}: cannot convert {mode} to RGBA ({e})", path) from None
        return composite_over_white(rgba)
    if mode == "CMYK":
        return _writable(np.asarray(_cmyk_to_rgb(im)))
    try:
        return _writable(np.asarray(im.convert("RGB")))
    except ValueError as e:
        raise DecodeError("unsupported_mode", f"{path}: cannot convert {mode} to RGB ({e})", path) from None


def _has_alpha(im: Image.Image) -> bool:
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    return "transparency" in im.info and im.mode in ("P", "L", "RGB")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile falls back to the plain formula
            pass
    return im.convert("RGB")


def _writable(arr: np.ndarray) -> np.ndarray:
    """Pillow hands out read-only views; callers may draw on or modify the array."""
    if arr.flags.writeable and arr.flags.c_contiguous:
        return arr
    return np.array(arr, copy=True, order="C")


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 -> HxWx3 uint8, alpha-blended over a white background (rounded)."""
    rgb = rgba[..., :3].astype(np.uint32)
    a = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * a + 255 * (255 - a) + 127) // 255
    return np.ascontiguousarray(out.astype(np.uint8))


def high_depth_to_uint8(arr: np.ndarray) -> np.ndarray:
    """16/32-bit integer or float single-channel data -> uint8 using its real range (see module doc)."""
    if arr.dtype.kind == "f":
        a = arr.astype(np.float64)
        finite = np.isfinite(a)
        if not finite.any():
            return np.zeros(a.shape, np.uint8)
        a = np.where(finite, a, 0.0)
        lo, hi = float(a[finite].min()), float(a[finite].max())
        if lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
        elif not (lo >= 0.0 and hi <= 255.0):
            a = _stretch(a, lo, hi)
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    a = arr.astype(np.int64)
    if a.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = int(a.min()), int(a.max())
    if lo >= 0 and hi <= 255:
        return a.astype(np.uint8)  # 8-bit values in a 16-bit container
    if lo >= 0 and hi <= 65535:
        return ((a + 128) // 257).astype(np.uint8)  # == round(a * 255 / 65535)
    return np.clip(np.rint(_stretch(a.astype(np.float64), lo, hi)), 0, 255).astype(np.uint8)


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros_like(a)
    return (a - lo) * (255.0 / (hi - lo))


# ---------------------------------------------------------------------------------------- hashing


def pixel_hash(rgb: np.ndarray) -> str:
    """Hash of the decoded pixels, shape and dtype included (sha256, hex; faster than blake2b where
    the CPU has SHA instructions): two files with the same hash are the same picture, whatever
    their format or metadata."""
    arr = np.ascontiguousarray(rgb)
    h = hashlib.sha256(f"{arr.dtype.str}|{'x'.join(map(str, arr.shape))}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, on RGB


_REDUCED = 128  # both hashes start from the same integer-factor reduction to >= this size


def _reduced(rgb: np.ndarray) -> np.ndarray:
    """Validated image, integer-factor area-reduced to >= _REDUCED px per side (OpenCV's one-pass
    integer area path; at most k-1 border pixels, split over both sides, are dropped), float32."""
    return _reduced_pair(rgb, mirror=False)[0]


def _reduced_pair(rgb: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """_reduced(rgb) and, with `mirror`, exactly _reduced(rgb[:, ::-1]) without mirroring the
    full-size image: the integer area path sums whole k x k blocks in integers, so reducing the
    columns the mirrored image keeps and mirroring the small result gives the same pixels."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"perceptual hashes need a uint8 image, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {arr.shape}")
    h, w = arr.shape[:2]
    if h < 1 or w < 1:
        raise ValueError("cannot hash an empty image")
    k = min(w, h) // _REDUCED
    flipped = arr if mirror else None
    if k > 1:
        h2, w2 = h // k, w // k
        y0, x0 = (h - h2 * k) // 2, (w - w2 * k) // 2
        rows = arr[y0 : y0 + h2 * k]
        arr = cv2.resize(rows[:, x0 : x0 + w2 * k], (w2, h2), interpolation=cv2.INTER_AREA)
        if mirror:
            xm = w - w2 * k - x0  # where the mirrored image's kept columns start, in this image
            flipped = arr if xm == x0 else cv2.resize(rows[:, xm : xm + w2 * k], (w2, h2), interpolation=cv2.INTER_AREA)
    if flipped is not None:
        flipped = np.ascontiguousarray(flipped[:, ::-1]).astype(np.float32)
    return arr.astype(np.float32), flipped


def _grey_thumb(reduced: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Luma (BT.601), exact area average down to `size` (w, h): insensitive to the resolution."""
    small = cv2.resize(reduced, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    return small @ _LUMA if small.ndim == 3 else small


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(bool).ravel()).tobytes(), "big")


def dhash(rgb: np.ndarray) -> int:
    """Difference hash: 9x8 luma thumbnail, bit = pixel brighter than its left neighbour (64 bits,
    row-major, first bit most significant)."""
    return _dhash(_reduced(rgb))


def phash(rgb: np.ndarray) -> int:
    """DCT perceptual hash: 32x32 luma thumbnail, 2-D DCT-II, the 8x8 lowest frequencies, bit =
    coefficient above the median of the 63 AC ones (the DC term, always large, sets bit 0)."""
    return _phash(_reduced(rgb))


def image_hashes(rgb: np.ndarray) -> tuple[int, int, int]:
    """(phash, dhash, phash of the mirrored image): the same values as phash(rgb), dhash(rgb) and
    phash(rgb[:, ::-1]), from one reduction and without a full-size mirrored copy."""
    r, flipped = _reduced_pair(rgb, mirror=True)
    return _phash(r), _dhash(r), _phash(flipped)


def all_image_hashes(rgb: np.ndarray) -> tuple[int, int, int, int, int]:
    """image_hashes(rgb), then the pHash of the picture inside its frame (frame_box: a solid border
    or padding cut away; the image's own pHash where it has none) and of its mirror image, all from
    one reduction. A copy re-published with a frame keeps its picture's hash, not its image's."""
    r, flipped = _reduced_pair(rgb, mirror=True)
    ph, ph_mirror = _phash(r), _phash(flipped)
    top, bottom, left, right = frame_box(r @ _LUMA.astype(np.float32) if r.ndim == 3 else r)
    if top + bottom + left + right == 0:
        return ph, _dhash(r), ph_mirror, ph, ph_mirror
    inner = r[top : r.shape[0] - bottom, left : r.shape[1] - right]
    return ph, _dhash(r), ph_mirror, _phash(inner), _phash(np.ascontiguousarray(inner[:, ::-1]))


FRAME_TOLERANCE = 4.0  # grey levels: a frame's line sits this close to the frame's colour (mean distance)
FRAME_AGREE = 8.0  # grey levels: two sides' frames this close in colour are one frame
FRAME_PASSES = 3  # a frame inside a frame (padding on a bordered photo) is cut too
FRAME_LEAST = 32  # pixels a side the picture keeps; smaller: no frame


def frame_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): the lines of a uniform frame around the picture, 0 where none.

    A side's frame is the run of lines, from the edge inward (at most a third of the image), that
    each sit within FRAME_TOLERANCE grey levels (mean distance) of the outermost line's colour. It
    counts only where another side has a frame of the same colour (within FRAME_AGREE): padding and
    borders go round the picture or across it (letterboxing), while a shadow or a dark backdrop
    along one edge is the picture's own. Repeated FRAME_PASSES times on what is left."""
    g = np.asarray(grey, np.float32)
    box = [0, 0, 0, 0]
    for _ in range(FRAME_PASSES):
        runs = [_frame_run(v) for v in (g, g[::-1], g.T, g.T[::-1])]
        cut = [n if n and any(k != i and m and abs(c - d) < FRAME_AGREE for k, (m, d) in enumerate(runs)) else 0
               for i, (n, c) in enumerate(runs)]
        if not any(cut):
            break
        t, b, left, r = cut
        g = g[t : g.shape[0] - b, left : g.shape[1] - r]
        box = [x + y for x, y in zip(box, cut)]
        if min(g.shape) < FRAME_LEAST:
            return 0, 0, 0, 0
    return box[0], box[1], box[2], box[3]


def _frame_run(lines: np.ndarray) -> tuple[int, float]:
    """(lines from the first that stay within FRAME_TOLERANCE of its colour, that colour); 0 lines
    where the run reaches a third of the image (a flat image, not a frame)."""
    colour = float(np.median(lines[0]))
    if np.abs(lines[0] - colour).mean() >= FRAME_TOLERANCE:  # most images: a textured edge, no frame
        return 0, colour
    most = len(lines) // 3
    far = np.abs(lines[: most + 1] - colour).mean(axis=1) >= FRAME_TOLERANCE
    n = int(np.argmax(far)) if far.any() else most + 1
    return (n if n < most else 0), colour


def _dhash(reduced: np.ndarray) -> int:
    t = _grey_thumb(reduced, (9, 8))
    return _bits_to_int(t[:, 1:] - t[:, :-1] > 1e-3)  # tolerance: float rounding on flat areas


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    c[0, :] /= np.sqrt(2.0)
    return c


_DCT32 = _dct_matrix(32)


def _phash(reduced: np.ndarray) -> int:
    t = _grey_thumb(reduced, (32, 32))
    d = _DCT32 @ t @ _DCT32.T
    low = d[:8, :8]
    return _bits_to_int(low > np.median(low.ravel()[1:]))


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes (accepts the signed int64 form used in tables)."""
    return ((int(a) ^ int(b)) & _MASK64).bit_count()
