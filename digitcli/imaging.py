"""Image file -> Digits features: the conversion the model was trained on.

UCI's optdigits (scikit-learn's Digits) were made by NIST's normalisation: the ink is cropped
to its bounding box, stretched to 20x32 pixels (aspect not kept), centred in a 32x32 binary
bitmap, its stroke width normalised by on-pixel count, its slant removed by a shear, and each
4x4 block's on-pixels counted, giving 8x8 values in 0..16.

Real files need more before that: EXIF orientation, transparency, either polarity, shadows
and tinted paper (:func:`flatten_background`), dust (:func:`remove_specks`). Each step is a
small pure function here; :func:`bitmap_from_image` and :func:`features_from_path` chain them.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitcli.errors import ImageError

#: Refuse images with more pixels than this (decompression bombs).
MAX_PIXELS = 64_000_000
#: Images are reduced so that their longest side is at most this before the conversion.
WORK_SIZE = 512
#: Ink contrast (0..1) below which an image counts as blank.
MIN_CONTRAST = 0.1
#: Strokes are at least this fraction of the strongest ink.
MIN_INK_FRACTION = 0.15
#: NIST's box: glyphs are stretched to this height and (at most) this width.
BOX_HEIGHT, BOX_WIDTH = 32, 20
#: When a glyph is reduced to the box, a pixel is on if at least this fraction of it is ink.
REDUCE_COVER = 0.25
#: A narrow glyph is widened to at most this many times its own width-to-height ratio.
MAX_WIDEN = 1.5


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file, apply its EXIF orientation and bound its size.

    Parameters
    ----------
    path : str or path-like
        Any format Pillow reads; animated files give their first frame.

    Returns
    -------
    PIL.Image.Image
        The decoded image, longest side at most :data:`WORK_SIZE`.

    Raises
    ------
    ImageError
        If the file is missing, not an image, truncated, or has more than
        :data:`MAX_PIXELS` pixels.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns about decompression bombs (checked below) and corrupt EXIF data
            # (the image is still read): neither belongs on the user's terminal.
            warnings.simplefilter("ignore")
            return _open_bounded(path)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageError(f"too large: {found.group(1) if found else 'too many'} pixels") from None
    except UnidentifiedImageError:
        raise ImageError("cannot identify image file") from None
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except OSError as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text or "broken data stream" in text:
            raise ImageError("truncated file") from None
        raise ImageError(f"cannot read image: {text}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageError(f"cannot decode image: {exc or type(exc).__name__}") from None


def _open_bounded(path: str | os.PathLike[str]) -> Image.Image:
    """Decode the first frame at a bounded size and apply the EXIF orientation."""
    with Image.open(path) as src:
        n = src.width * src.height
        if n > MAX_PIXELS:
            raise ImageError(f"too large: {n} pixels")
        if n == 0:
            raise ImageError("empty image: 0 pixels")
        scale = max(src.size) / WORK_SIZE
        if scale > 1:
            # JPEG (and MPO) decode straight at a reduced scale; other formats ignore this.
            mode = "L" if src.mode in ("L", "RGB") else src.mode
            src.draft(mode, (int(src.width / scale) + 1, int(src.height / scale) + 1))
        src.load()
        img = ImageOps.exif_transpose(src)
    if max(img.size) > WORK_SIZE:
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return img


def to_gray(img: Image.Image) -> np.ndarray:
    """Luminance in 0..1 (1 = white), with transparency flattened onto a contrasting ground.

    Parameters
    ----------
    img : PIL.Image.Image
        Any mode (1, L, P, LA, RGB, RGBA, CMYK, I;16, I, F ...).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(height, width)``.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.ones_like(a)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        lum = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
        if alpha.min() < 1.0:
            # Ink drawn on a transparent ground: flatten onto white, unless the opaque
            # strokes are light, in which case onto black, so the strokes keep contrast.
            weight = alpha.sum()
            stroke_lum = float((lum * alpha).sum() / weight) if weight else 1.0
            ground = 0.0 if stroke_lum > 0.5 else 1.0
            return lum * alpha + ground * (1.0 - alpha)
        return lum
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.float32) / 255.0


def ink_strength(gray: np.ndarray, invert: bool | None = None) -> np.ndarray:
    """How much ink each pixel holds, 0..1, whatever the polarity of the image.

    Parameters
    ----------
    gray : numpy.ndarray
        Luminance 0..1.
    invert : bool or None
        ``False``: dark ink on light paper; ``True``: light ink on a dark ground (MNIST);
        ``None``: decide from the border, which is mostly background.

    Returns
    -------
    numpy.ndarray
        Same shape, 1 = full ink.
    """
    if invert is None:  # most of the border dark: light ink on a dark ground
        dark = (
            np.count_nonzero(gray[0] < 0.5)
            + np.count_nonzero(gray[-1] < 0.5)
            + np.count_nonzero(gray[:, 0] < 0.5)
            + np.count_nonzero(gray[:, -1] < 0.5)
        )
        invert = dark > gray.shape[0] + gray.shape[1]
    return gray if invert else 1.0 - gray


def _rank_filter(a: np.ndarray, size: int, op: np.ufunc) -> np.ndarray:
    """Separable min, max or sum filter (``op`` = ``np.minimum`` / ``np.maximum`` / ``np.add``).

    Edges are repeated (indexing with clipped positions: cheaper than ``np.pad``).
    """
    r = size // 2
    h, w = a.shape
    wide = a[:, np.clip(np.arange(-r, w + r), 0, w - 1)]
    rows = wide[:, :w].copy()
    for i in range(1, size):
        op(rows, wide[:, i : i + w], out=rows)
    tall = rows[np.clip(np.arange(-r, h + r), 0, h - 1)]
    out = tall[:h].copy()
    for i in range(1, size):
        op(out, tall[i : i + h], out=out)
    return out


def flatten_background(ink: np.ndarray, work: int = 64) -> np.ndarray:
    """Remove slowly varying ground (shadows, uneven light, tinted paper) from an ink map.

    The ground's ink level is estimated on a copy at most `work` pixels wide by a grey-level
    opening (min then max filters wider than a pen stroke), smoothed, enlarged back and
    subtracted.

    Parameters
    ----------
    ink : numpy.ndarray
        Ink strength 0..1.
    work : int
        Longest side of the copy the ground is estimated on.

    Returns
    -------
    numpy.ndarray
        Ink above the local ground, 0..1.
    """
    h, w = ink.shape
    scale = work / max(h, w)
    small = ink.astype(np.float32)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(small, mode="F").resize(size, Image.Resampling.BOX))
    # Windows of 5 pixels at the work size; smaller images use proportionally smaller ones.
    k = 5 if scale <= 1.0 else max(3, int(5 / scale) | 1)
    # An opening: a min filter (two passes of k = one of 2k-1) then a max filter of k.
    ground = _rank_filter(_rank_filter(small, 2 * k - 1, np.minimum), k, np.maximum)
    for _ in range(2):  # two box means: a smooth ground, like a Gaussian blur
        ground = _rank_filter(ground, k, np.add) / (k * k)
    if scale < 1.0:
        ground = np.asarray(
            Image.fromarray(ground, mode="F").resize((w, h), Image.Resampling.BILINEAR)
        )
    return np.clip(ink - ground, 0.0, 1.0)


def _histogram(values: np.ndarray) -> np.ndarray:
    """256-bin histogram of values in 0..1."""
    bins = np.clip((values.ravel() * 255.0 + 0.5).astype(np.intp), 0, 255)
    return np.bincount(bins, minlength=256).astype(np.float64)


def otsu_threshold(values: np.ndarray, hist: np.ndarray | None = None) -> float:
    """Otsu's threshold of values in 0..1 (maximises the between-class variance).

    Parameters
    ----------
    values : numpy.ndarray
        Any shape, values in 0..1.
    hist : numpy.ndarray or None
        Their 256-bin histogram, if already made.

    Returns
    -------
    float
        The threshold; values above it are one class.
    """
    p = _histogram(values) if hist is None else hist
    levels = np.arange(256) / 255.0
    w0 = np.cumsum(p)
    w1 = w0[-1] - w0
    m0 = np.cumsum(p * levels)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float((int(np.argmax(between)) + 0.5) / 255.0)


def ink_threshold(ink: np.ndarray) -> float:
    """The ink level that separates strokes from ground.

    Otsu's threshold, but never below :data:`MIN_INK_FRACTION` of the strongest ink (the
    99.9th percentile), so faint noise on an almost empty page does not become strokes.

    Parameters
    ----------
    ink : numpy.ndarray
        Ink strength 0..1 (after :func:`flatten_background`).

    Returns
    -------
    float

    Raises
    ------
    ImageError
        ``no digit found`` when the strongest ink is below :data:`MIN_CONTRAST`.
    """
    hist = _histogram(ink)
    above = np.cumsum(hist[::-1])[::-1]  # pixels at or above each level
    strongest = float(np.flatnonzero(above >= 0.001 * hist.sum())[-1]) / 255.0
    if strongest < MIN_CONTRAST:
        raise ImageError("no digit found")
    return max(otsu_threshold(ink, hist), MIN_INK_FRACTION * strongest)


def components(mask: np.ndarray) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """8-connected components of a mask, by union-find over horizontal runs.

    Parameters
    ----------
    mask : numpy.ndarray
        bool, 2-D.

    Returns
    -------
    list of (area, runs)
        One entry per component; ``runs`` are ``(row, first column, last column)``.
    """
    parent: list[int] = []

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    run_rows, run_starts = np.nonzero(edges == 1)
    run_ends = np.nonzero(edges == -1)[1] - 1  # same row-major order as the starts
    runs: list[tuple[int, int, int, int]] = []
    previous: list[tuple[int, int, int]] = []
    current: list[tuple[int, int, int]] = []
    row = -2
    for r, start, end in zip(
        run_rows.tolist(), run_starts.tolist(), run_ends.tolist(), strict=True
    ):
        if r != row:
            previous = current if r == row + 1 else []
            current = []
            row = r
        rid = len(parent)
        parent.append(rid)
        for p_start, p_end, pid in previous:
            if p_start <= end + 1 and p_end >= start - 1:
                a, b = find(rid), find(pid)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        current.append((start, end, rid))
        runs.append((r, start, end, rid))
    grouped: dict[int, tuple[int, list[tuple[int, int, int]]]] = {}
    for r, start, end, rid in runs:
        area, members = grouped.setdefault(find(rid), (0, []))
        members.append((r, start, end))
        grouped[find(rid)] = (area + end - start + 1, members)
    return list(grouped.values())


def remove_specks(mask: np.ndarray, min_fraction: float = 0.05) -> np.ndarray:
    """Keep the pieces of ink that belong to the digit.

    Pieces smaller than `min_fraction` of the largest are dust. Pieces touching the image's
    edge (a table edge, the shadow of the phone, the border of a scan) are dropped too, when
    pieces clear of the edge hold at least a quarter as much ink: then they are the digit.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ink mask.
    min_fraction : float
        Pieces below this fraction of the largest kept piece's area are dust.

    Returns
    -------
    numpy.ndarray
        The cleaned mask.
    """
    pieces = components(mask)
    if len(pieces) <= 1:
        return mask
    h, w = mask.shape

    def touches_edge(runs: list[tuple[int, int, int]]) -> bool:
        return any(r in (0, h - 1) or start == 0 or end == w - 1 for r, start, end in runs)

    inner = [(area, runs) for area, runs in pieces if not touches_edge(runs)]
    inner_ink = sum(area for area, _ in inner)
    if inner and inner_ink >= 0.25 * (mask.sum() - inner_ink):
        pieces = inner
    largest = max(area for area, _ in pieces)
    out = np.zeros_like(mask)
    for area, runs in pieces:
        if area >= min_fraction * largest:
            for r, start, end in runs:
                out[r, start : end + 1] = True
    return out


def ink_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(top, bottom, left, right)`` (end-exclusive) of a mask's on-pixels.

    Raises
    ------
    ImageError
        ``no digit found`` if the mask is empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ImageError("no digit found")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def glyph_width(height: int, width: int) -> int:
    """Width in the 32x32 bitmap of a glyph whose ink box is `height` x `width`.

    NIST stretches every glyph to 20 pixels wide, but Digits' 1s are not 20-pixel slabs: a
    narrow glyph keeps at most :data:`MAX_WIDEN` times its own proportions.
    """
    return int(min(BOX_WIDTH, max(1, round(BOX_HEIGHT * width / height * MAX_WIDEN))))


def normalise_bitmap(ink: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """Stretch the ink in `mask`'s box to the 20x32 box and centre it in a 32x32 bitmap.

    A glyph shorter than 32 pixels is enlarged from its grey levels (smooth edges); a larger
    one is reduced from its mask by area, a pixel being on when at least :data:`REDUCE_COVER`
    of it is ink, so that thin pen strokes survive (:func:`normalise_strokes` then evens
    the stroke width).

    Parameters
    ----------
    ink : numpy.ndarray
        Ink strength.
    mask : numpy.ndarray
        bool ink mask (cleaned), same shape.
    threshold : float
        The ink level of :func:`ink_threshold`.

    Returns
    -------
    numpy.ndarray
        bool ``(32, 32)``: ink in the top and bottom rows, horizontally centred.
    """
    top, bottom, left, right = ink_box(mask)
    width = glyph_width(bottom - top, right - left)
    crop = mask[top:bottom, left:right]
    if bottom - top < BOX_HEIGHT:
        levels = np.where(crop, ink[top:bottom, left:right] / threshold, 0.0)
        resample, cut = Image.Resampling.BILINEAR, 1.0
    else:
        levels, resample, cut = crop.astype(np.float32), Image.Resampling.BOX, REDUCE_COVER
    img = Image.fromarray(levels.astype(np.float32), mode="F").resize((width, BOX_HEIGHT), resample)
    out = np.zeros((32, 32), dtype=bool)
    x0 = (32 - width) // 2
    out[:, x0 : x0 + width] = np.asarray(img) >= cut
    return out


def _erode(b: np.ndarray) -> np.ndarray:
    out = b.copy()
    out[1:] &= b[:-1]
    out[:-1] &= b[1:]
    out[:, 1:] &= b[:, :-1]
    out[:, :-1] &= b[:, 1:]
    return out


def _dilate(b: np.ndarray) -> np.ndarray:
    out = b.copy()
    out[1:] |= b[:-1]
    out[:-1] |= b[1:]
    out[:, 1:] |= b[:, :-1]
    out[:, :-1] |= b[:, 1:]
    return out


def normalise_strokes(bitmap: np.ndarray) -> np.ndarray:
    """NIST's stroke-width normalisation by on-pixel count (4-neighbour erode/dilate).

    More than 560 on-pixels: erode twice; 413-560: once; 256-412: as is; 108-255: dilate
    once; fewer than 108: dilate twice.

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool ``(32, 32)``.

    Returns
    -------
    numpy.ndarray
        bool ``(32, 32)``.
    """
    n = int(bitmap.sum())
    if n > 560:
        return _erode(_erode(bitmap))
    if n > 412:
        return _erode(bitmap)
    if n < 108:
        return _dilate(_dilate(bitmap))
    if n < 256:
        return _dilate(bitmap)
    return bitmap


def remove_slant(bitmap: np.ndarray) -> np.ndarray:
    """Shear rows so the left edges of the top and bottom inked rows line up (NIST deslant).

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool ``(32, 32)``.

    Returns
    -------
    numpy.ndarray
        bool ``(32, 32)``; ink shifted past the sides is cut off.
    """
    rows = np.flatnonzero(bitmap.any(axis=1))
    if rows.size < 2:
        return bitmap
    top, bottom = int(rows[0]), int(rows[-1])
    slope = (np.flatnonzero(bitmap[bottom])[0] - np.flatnonzero(bitmap[top])[0]) / (bottom - top)
    n_rows, n_cols = bitmap.shape
    shifts = np.rint(slope * (np.arange(n_rows) - (top + bottom) / 2)).astype(np.intp)
    source = np.arange(n_cols)[None, :] + shifts[:, None]  # row y moves left by shifts[y]
    inside = (source >= 0) & (source < n_cols)
    picked = bitmap[np.arange(n_rows)[:, None], np.clip(source, 0, n_cols - 1)]
    return picked & inside


def block_counts(bitmap: np.ndarray) -> np.ndarray:
    """Count the on-pixels of each 4x4 block of a 32x32 bitmap.

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool array of shape ``(32, 32)``.

    Returns
    -------
    numpy.ndarray
        int array of shape ``(8, 8)``, values 0..16.
    """
    return bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))


def bitmap_from_image(img: Image.Image, invert: bool | None = None) -> np.ndarray:
    """The normalised 32x32 bitmap of a decoded image (every step before the counting).

    Parameters
    ----------
    img : PIL.Image.Image
        The image.
    invert : bool or None
        Polarity, see :func:`ink_strength`.

    Returns
    -------
    numpy.ndarray
        bool ``(32, 32)``.

    Raises
    ------
    ImageError
        ``no digit found`` for a blank image.
    """
    ink = flatten_background(ink_strength(to_gray(img), invert))
    threshold = ink_threshold(ink)
    mask = remove_specks(ink > threshold)
    bitmap = normalise_bitmap(ink, mask, threshold)
    return remove_slant(normalise_strokes(bitmap))


def features_from_image(img: Image.Image, invert: bool | None = None) -> np.ndarray:
    """Digits features of a decoded image.

    Parameters
    ----------
    img : PIL.Image.Image
        The image.
    invert : bool or None
        Polarity, see :func:`ink_strength`.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(64,)``, values 0..16.
    """
    return block_counts(bitmap_from_image(img, invert)).reshape(64).astype(np.float64)


def bitmap_from_path(path: str | os.PathLike[str], invert: bool | None = None) -> np.ndarray:
    """The normalised 32x32 bitmap of an image file.

    Parameters
    ----------
    path : str or path-like
        The image file.
    invert : bool or None
        Polarity, see :func:`ink_strength`.

    Returns
    -------
    numpy.ndarray
        bool ``(32, 32)``.

    Raises
    ------
    ImageError
        With a short reason for anything that goes wrong with this file, whatever it is.
    """
    try:
        return bitmap_from_image(open_image(path), invert)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an odd file is that file's error, never a crash
        raise ImageError(f"cannot read image: {type(exc).__name__}: {exc}") from None


def features_from_path(path: str | os.PathLike[str], invert: bool | None = None) -> np.ndarray:
    """Digits features of an image file.

    Parameters
    ----------
    path : str or path-like
        The image file.
    invert : bool or None
        Polarity, see :func:`ink_strength`.

    Returns
    -------
    numpy.ndarray
        Shape ``(64,)``, values 0..16.

    Raises
    ------
    ImageError
        With a short reason when the file cannot be converted.
    """
    return block_counts(bitmap_from_path(path, invert)).reshape(64).astype(np.float64)
