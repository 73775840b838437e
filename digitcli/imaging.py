"""Image file -> Digits features: the conversion the model was trained on.

UCI's optdigits (scikit-learn's Digits) were made by NIST's normalisation: the ink is cropped
to its bounding box, stretched to 20x32 pixels (aspect not kept), centred in a 32x32 binary
bitmap, and each 4x4 block's on-pixels are counted, giving 8x8 values in 0..16. Each step is a
small pure function here; :func:`features_from_path` chains them.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitcli.errors import ImageError

#: Refuse images with more pixels than this (decompression bombs).
MAX_PIXELS = 64_000_000
#: Images are reduced so that their longest side is at most this before the conversion.
WORK_SIZE = 512
#: Ink contrast (0..1) below which an image counts as blank.
MIN_CONTRAST = 0.15


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
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            src = Image.open(path)
        with src:
            n = src.width * src.height
            if n > MAX_PIXELS:
                raise ImageError(f"too large: {n} pixels")
            if n == 0:
                raise ImageError("empty image: 0 pixels")
            scale = max(src.size) / WORK_SIZE
            if scale > 1 and src.format == "JPEG":
                src.draft(src.mode, (int(src.width / scale) + 1, int(src.height / scale) + 1))
            src.load()
            img = ImageOps.exif_transpose(src)
        if max(img.size) > WORK_SIZE:
            img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
        return img
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageError(f"too large: {found.group(1) if found else 'too many'} pixels") from None
    except UnidentifiedImageError:
        raise ImageError("cannot identify image file") from None
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except OSError as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text or "broken data stream" in text:
            raise ImageError("truncated file") from None
        raise ImageError(f"cannot read image: {text}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageError(f"cannot decode image: {exc or type(exc).__name__}") from None


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
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


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
    if invert is None:
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        invert = float(np.median(border)) < 0.5
    return gray if invert else 1.0 - gray


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values in 0..1 (maximises the between-class variance).

    Parameters
    ----------
    values : numpy.ndarray
        Any shape, values in 0..1.

    Returns
    -------
    float
        The threshold; values above it are one class.
    """
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    p = hist.astype(np.float64)
    w0 = np.cumsum(p)
    w1 = w0[-1] - w0
    centres = (edges[:-1] + edges[1:]) / 2
    m0 = np.cumsum(p * centres)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Binary ink mask by Otsu's threshold.

    Parameters
    ----------
    ink : numpy.ndarray
        Ink strength 0..1.

    Returns
    -------
    numpy.ndarray
        bool, same shape.

    Raises
    ------
    ImageError
        ``no digit found`` when the image has no contrast or no ink.
    """
    lo, hi = np.percentile(ink, [1, 99.9])
    if hi - lo < MIN_CONTRAST:
        raise ImageError("no digit found")
    mask = ink > max(otsu_threshold(ink), lo + MIN_CONTRAST / 2)
    if not mask.any():
        raise ImageError("no digit found")
    return mask


def crop_to_ink(mask: np.ndarray) -> np.ndarray:
    """Crop a mask to the bounding box of its on-pixels.

    Parameters
    ----------
    mask : numpy.ndarray
        bool array with at least one on-pixel.

    Returns
    -------
    numpy.ndarray
        The cropped mask.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ImageError("no digit found")
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def normalise_bitmap(glyph: np.ndarray, width: int = 20, height: int = 32) -> np.ndarray:
    """Stretch a cropped glyph to `width` x `height` and centre it in a 32x32 bitmap.

    Parameters
    ----------
    glyph : numpy.ndarray
        Cropped bool mask.
    width, height : int
        Target box (NIST: 20 x 32; the aspect ratio is not kept).

    Returns
    -------
    numpy.ndarray
        bool array of shape ``(32, 32)``.
    """
    img = Image.fromarray(glyph.astype(np.float32), mode="F")
    box = np.asarray(img.resize((width, height), Image.Resampling.BOX)) >= 0.5
    out = np.zeros((32, 32), dtype=bool)
    left = (32 - width) // 2
    top = (32 - height) // 2
    out[top : top + height, left : left + width] = box
    return out


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
    ink = ink_strength(to_gray(img), invert)
    bitmap = normalise_bitmap(crop_to_ink(ink_mask(ink)))
    return block_counts(bitmap).reshape(64).astype(np.float64)


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
    if Path(path).is_dir():
        raise ImageError("is a folder")
    return features_from_image(open_image(path), invert)
