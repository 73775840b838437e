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

import errno
import functools
import io
import math
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from digitcli.errors import ImageError

#: Refuse images with more pixels than this (decompression bombs).
MAX_PIXELS = 64_000_000
#: Refuse images with a side longer than this (a 1 x 64,000,000 image is a bomb too).
MAX_SIDE = 65_535
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
#: A piece of ink no deeper than this fraction of the image, running along BAND_COVER of a
#: side or from side to opposite side, is the edge of the paper, a shadow or a table ...
BAND_DEPTH = 0.25
BAND_COVER = 0.5
#: ... when the pieces clear of the edge hold at least this share of all the ink and one of
#: them spans at least MIN_INNER_SPAN of the image's height or width: then they are the digit.
MIN_INNER_SHARE = 0.02
MIN_INNER_SPAN = 0.1


#: The formats that are opened, all decoded inside this process: nothing else is handed to
#: Pillow (EPS would run Ghostscript; ICO and ICNS hold images of their own). JPEG covers
#: the multi-picture JPEGs (MPO) of phones.
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM")
#: A PNG's chunks other than image data are read whole by Pillow: at most this many bytes
#: of them in all, and at most this many chunks.
MAX_PNG_EXTRA = 16 * 2**20
MAX_PNG_CHUNKS = 100_000
#: Files up to this size are read into memory at once.
SMALL_FILE = 1 << 16
#: Larger images are reduced a strip of about STRIP_ROWS rows at a time, never copied whole
#: (a 64 MP RGBA PNG: 294,000 KB peak with 32 rows, 307,000 with 256).
STRIP_PIXELS = 8_000_000
STRIP_ROWS = 32
#: Pillow decodes WebP (animated or not) through an RGBA canvas and copies of it: about
#: 16 bytes a pixel. More than this many pixels would need more than 300 MB.
MAX_WEBP_PIXELS = 16_000_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DATA = (b"IDAT", b"fdAT")  # image data: streamed, never read whole


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file, apply its EXIF orientation and bound its size.

    Only regular files are opened, without ever waiting (a FIFO or a device is refused),
    and only in the :data:`FORMATS`, whatever the file's name says.

    Parameters
    ----------
    path : str or path-like
        A file in one of the :data:`FORMATS`; animated files give their first frame.

    Returns
    -------
    PIL.Image.Image
        The decoded image, longest side at most :data:`WORK_SIZE`.

    Raises
    ------
    ImageError
        If the file is missing, not a regular file, not an image, truncated, has more than
        :data:`MAX_PIXELS` pixels, or a PNG whose other chunks are too large.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns about decompression bombs (checked below) and corrupt EXIF data
            # (the image is still read): neither belongs on the user's terminal.
            warnings.simplefilter("ignore")
            with _open_regular(path) as fp:
                # A small file is read at once (one read instead of Pillow's many).
                head = fp.read(SMALL_FILE + 1)
                data: IO[bytes] = io.BytesIO(head) if len(head) <= SMALL_FILE else fp
                data.seek(0)
                _check_png_chunks(data)
                return _open_bounded(data)
    except Exception as exc:  # noqa: BLE001 - an odd file is that file's error, never a crash
        raise _image_error(exc) from None


def _image_error(exc: BaseException) -> ImageError:
    """The one wording of each way a file can fail to be read."""
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return ImageError(f"too large: {found.group(1) if found else 'too many'} pixels")
    if isinstance(exc, UnidentifiedImageError):
        return ImageError("cannot identify image file")
    if isinstance(exc, FileNotFoundError):
        return ImageError("file not found")
    if isinstance(exc, PermissionError):
        return ImageError("permission denied")
    if isinstance(exc, IsADirectoryError):
        return ImageError("is a folder")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        if exc.errno == errno.ENXIO:  # a socket: no reading it
            return ImageError("not a regular file")
        if "truncated" in text.lower() or "broken data stream" in text:
            return ImageError("truncated file")
        return ImageError(f"cannot read image: {text}")
    if isinstance(exc, (ValueError, SyntaxError, EOFError, MemoryError)):
        return ImageError(f"cannot decode image: {text}")
    return ImageError(f"cannot read image: {type(exc).__name__}: {text}")


def _open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a regular file for reading; never blocks (a FIFO's open does not wait)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageError("is a folder")
        if not stat.S_ISREG(mode):
            raise ImageError("not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_png_chunks(fp: IO[bytes]) -> None:
    """Refuse a PNG whose chunks besides the image data are too large, before Pillow reads them.

    Pillow reads each such chunk whole; here only the chunks' 8-byte headers are read.
    """
    if fp.read(8) != _PNG_SIGNATURE:
        fp.seek(0)
        return
    extra = 0
    for _ in range(MAX_PNG_CHUNKS):
        header = fp.read(8)
        if len(header) < 8:
            break
        length, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind not in _PNG_DATA:
            extra += length
            if extra > MAX_PNG_EXTRA:
                raise ImageError(f"too large: PNG chunks of {extra} bytes besides the image")
        if kind == b"IEND":
            break
        fp.seek(length + 4, os.SEEK_CUR)  # the chunk's data and its CRC
    else:
        raise ImageError(f"cannot read image: more than {MAX_PNG_CHUNKS} PNG chunks")
    fp.seek(0)


@functools.cache
def _formats() -> tuple[str, ...]:
    """:data:`FORMATS`, their Pillow plugins loaded (only the common ones are, at first)."""
    import importlib

    for plugin in ("Bmp", "Gif", "Jpeg", "Png", "Ppm", "Tiff", "WebP"):
        importlib.import_module(f"PIL.{plugin}ImagePlugin")
    return FORMATS


def _open_bounded(fp: IO[bytes]) -> Image.Image:
    """Decode the first frame at a bounded size and apply the EXIF orientation."""
    with Image.open(fp, formats=_formats()) as src:
        n = src.width * src.height
        if n > MAX_PIXELS:
            raise ImageError(f"too large: {n} pixels")
        if max(src.size) > MAX_SIDE:  # Pillow keeps a pointer a row: 512 MB for 64M rows
            raise ImageError(f"too large: {src.width}x{src.height} pixels")
        if n == 0:
            raise ImageError("empty image: 0 pixels")
        scale = max(src.size) / WORK_SIZE
        if scale > 1:
            # JPEG (and MPO) decode straight at a reduced scale; other formats ignore this.
            mode = "L" if src.mode in ("L", "RGB") else src.mode
            src.draft(mode, (int(src.width / scale) + 1, int(src.height / scale) + 1))
        if src.format == "WEBP" and n > MAX_WEBP_PIXELS:
            raise ImageError(f"too large: {n} pixels (a WebP of more than {MAX_WEBP_PIXELS})")
        src.load()
        img = _shrunk(src) if n > STRIP_PIXELS else src
        # Only a rotated or mirrored image needs the (copying) transpose.
        if _orientation(src) in range(2, 9):
            img = ImageOps.exif_transpose(img)
    if max(img.size) > WORK_SIZE:
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return img


def _shrunk(img: Image.Image) -> Image.Image:
    """A large image reduced by a whole factor (box means) a strip at a time.

    The result is ``img.reduce(factor)``, still at least :data:`WORK_SIZE` wide or high, but
    no full-size copy is ever made (reducing an image with alpha copies it whole).
    """
    factor = max(1, max(img.size) // WORK_SIZE)
    if factor == 1:
        return img
    w, h = img.size
    # Modes that reduce() does not take are converted, a strip at a time.
    mode = {"P": "RGBA", "PA": "RGBA", "1": "L"}.get(img.mode, img.mode)
    if mode.startswith("I;16"):
        mode = "I"
    out = Image.new(mode, (-(-w // factor), -(-h // factor)))
    rows = factor * max(1, STRIP_ROWS // factor)
    for top in range(0, h, rows):
        strip = img.crop((0, top, w, min(h, top + rows)))
        out.paste(strip.convert(mode).reduce(factor), (0, top // factor))
    return out


#: Where Pillow finds an orientation: EXIF blocks, PNG's text copy of one, XMP packets.
_ORIENTATION_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored), read only when the file has metadata."""
    if not hasattr(img, "tag_v2") and not any(key in img.info for key in _ORIENTATION_KEYS):
        return 1  # most files: parsing an empty EXIF block would cost more than the checks
    return img.getexif().get(ExifTags.Base.Orientation, 1)


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
    return _scaled(_gray_pixels(img))


def _scaled(gray: np.ndarray) -> np.ndarray:
    """Grey levels from :func:`_gray_pixels` (one image or a stack) as float32 in 0..1."""
    return gray.astype(np.float32) / np.float32(255) if gray.dtype == np.uint8 else gray


def _gray_pixels(img: Image.Image) -> np.ndarray:
    """:func:`to_gray`, but 8-bit grey levels stay uint8 0..255 (scaled later, a stack at once)."""
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
    # Cheaper than np.asarray(img), which also goes through tobytes().
    return np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(img.height, img.width)


def _as_stack(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """An image as a stack of one ``(1, h, w)``, or a stack as it is; and whether it was one."""
    return (a[None], True) if a.ndim == 2 else (a, False)


def ink_strength(gray: np.ndarray, invert: bool | None = None) -> np.ndarray:
    """How much ink each pixel holds, 0..1, whatever the polarity of the image.

    Parameters
    ----------
    gray : numpy.ndarray
        Luminance 0..1: one image ``(h, w)`` or a stack ``(n, h, w)``.
    invert : bool or None
        ``False``: dark ink on light paper; ``True``: light ink on a dark ground (MNIST);
        ``None``: decide for each image from its border, which is mostly background.

    Returns
    -------
    numpy.ndarray
        Same shape, 1 = full ink.
    """
    if invert is not None:
        return gray if invert else 1.0 - gray
    dark = (
        np.count_nonzero(gray[..., 0, :] < 0.5, axis=-1)
        + np.count_nonzero(gray[..., -1, :] < 0.5, axis=-1)
        + np.count_nonzero(gray[..., :, 0] < 0.5, axis=-1)
        + np.count_nonzero(gray[..., :, -1] < 0.5, axis=-1)
    )
    light_ink = dark > gray.shape[-2] + gray.shape[-1]  # most of the border dark
    return np.where(np.asarray(light_ink)[..., None, None], gray, 1.0 - gray)


def _filter_axis(
    a: np.ndarray, r: int, op: np.ufunc, axis: int, work: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """``op`` over the window ``x - r .. x + r`` along axis -1 or -2, edges repeated.

    The stack is padded with its edges, then each term of the window is one operation on
    the whole padded stack seen as a flat array, shifted by the term's offset (positions
    whose window crosses into the next row or image are cut off at the end). The terms are
    taken in order of position, so a float sum adds them in a fixed order.

    `work` is two flat buffers, each large enough for the padded stack: the padded copy
    goes into the first, the result into the second (returned as a view of it), so `a`
    may be a view of the second.
    """
    h, w = a.shape[-2:]
    shape = (*a.shape[:-1], w + 2 * r) if axis == -1 else (*a.shape[:-2], h + 2 * r, w)
    size = math.prod(shape)
    padded, out = work[0][:size], work[1][:size]
    grid = padded.reshape(shape)
    if axis == -1:
        grid[..., r : r + w], grid[..., :r], grid[..., r + w :] = a, a[..., :1], a[..., -1:]
    else:
        grid[..., r : r + h, :], grid[..., :r, :] = a, a[..., :1, :]
        grid[..., r + h :, :] = a[..., -1:, :]
    step = 1 if axis == -1 else w
    n = size - 2 * r * step  # positions whose window lies inside the padded stack
    out[:n] = padded[:n]
    for i in range(1, 2 * r + 1):
        op(out[:n], padded[i * step : n + i * step], out=out[:n])
    result = out.reshape(shape)
    return result[..., :w] if axis == -1 else result[..., :h, :]


def _rank_filter(
    a: np.ndarray, size: int, op: np.ufunc, work: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Separable min, max or sum filter over the last two axes, edges repeated.

    ``op`` is ``np.minimum``, ``np.maximum`` or ``np.add``; `size` is odd. With `work`
    (see :func:`_work_buffers`) the result is a view of ``work[1]``.
    """
    work = work if work is not None else _work_buffers(a, size // 2)
    return _filter_axis(_filter_axis(a, size // 2, op, -1, work), size // 2, op, -2, work)


def _work_buffers(a: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Two flat buffers for :func:`_filter_axis` on `a` with windows of radius up to `r`."""
    h, w = a.shape[-2:]
    size = math.prod(a.shape[:-2]) * (h + 2 * r) * (w + 2 * r)
    return np.empty(size, dtype=a.dtype), np.empty(size, dtype=a.dtype)


def _resize_each(
    stack: np.ndarray, size: tuple[int, int], resample: Image.Resampling
) -> np.ndarray:
    return np.stack(
        [
            np.asarray(Image.fromarray(np.ascontiguousarray(a), mode="F").resize(size, resample))
            for a in stack
        ]
    )


#: The ground is first estimated with windows of about this many pixels at the work size ...
GROUND_WINDOW = 5
#: ... and where that estimate rises near the digit by more than this fraction of the ink's
#: contrast (it may have climbed onto a bold stroke) ...
GROUND_RISE = 0.2
#: ... again near the digit, first with a window this fraction of the larger side of the
#: digit's box: no window fits inside any part of the digit (unless its whole box is ink) ...
DIGIT_WINDOW = 1.0
#: ... then with a window this many times the digit's widest stroke (the side of the largest
#: square of ink in it), to follow the ground as closely as that pen allows.
STROKE_WINDOW = 2
#: Between two strokes, a pixel at least this fraction as dark as both is a stroke's
#: hollowed inside (a hole or a gap between strokes is paper).
HOLLOW_LEVEL = 0.8


def flatten_background(ink: np.ndarray, work: int = 64) -> np.ndarray:
    """Remove slowly varying ground (shadows, uneven light, tinted paper) from an ink map.

    The first return value of :func:`ink_masks`, which explains how.

    Parameters
    ----------
    ink : numpy.ndarray
        Ink strength 0..1: one image ``(h, w)`` or a stack ``(n, h, w)``.
    work : int
        Longest side of the copy the ground is estimated on.

    Returns
    -------
    numpy.ndarray
        float32, same shape: ink above the local ground, 0..1.
    """
    stack, single = _as_stack(ink)
    flat = ink_masks(stack, work)[0]
    return flat[0] if single else flat


def ink_masks(ink: np.ndarray, work: int = 64) -> tuple[np.ndarray, ...]:
    """Remove the ground, threshold and clean a stack of ink maps.

    The ground's ink level is estimated on a copy at most `work` pixels wide, enlarged back
    and subtracted; then Otsu's threshold and :func:`remove_specks` give the digit's mask.

    A first estimate is a grey-level opening with windows of about :data:`GROUND_WINDOW`
    pixels, smoothed. It follows shadows and uneven light closely, but a pen wider than its
    window holds the window too: the estimate climbs onto the stroke, and the stroke would
    be hollowed into its outline. So wherever this estimate rises near the digit by more
    than :data:`GROUND_RISE` of the ink's contrast, the ground near the digit (whose box the
    outline keeps) is estimated again, by an opening whose square window is as large as the
    digit's box (:data:`DIGIT_WINDOW`). An opening takes at each pixel the highest of the
    lowest levels of the windows that hold it; no window fits inside the digit, so under
    every stroke the ground is the paper beside it, and no ink is taken for ground. With the
    whole digit in hand, the window is then narrowed to :data:`STROKE_WINDOW` times its
    widest stroke (the largest square of ink that both this mask and the first one, its
    hollowed insides filled, hold), so that the ground is followed as closely as that pen
    allows. These openings count only windows inside the image: ink along a side (a tight
    crop) is not continued past it.

    Parameters
    ----------
    ink : numpy.ndarray
        ``(n, h, w)`` ink strength 0..1 (:func:`ink_strength`).
    work : int
        Longest side of the copy the ground is estimated on.

    Returns
    -------
    flat : numpy.ndarray
        float32 ``(n, h, w)``: ink above the local ground, 0..1.
    thresholds : numpy.ndarray
        ``(n,)`` the ink level of the strokes (:func:`ink_thresholds`).
    blank : numpy.ndarray
        bool ``(n,)``: no digit (the strongest ink is too faint).
    mask : numpy.ndarray
        bool ``(n, h, w)``: the digit's ink, cleaned by :func:`remove_specks`.
    """
    ink = ink.astype(np.float32, copy=False)
    ground, small, k = _first_ground(ink, work)
    *result, inked = _masks(ink, ground)
    window, near, redo = _hollowing_risk(ground, small, inked, k)
    todo = np.flatnonzero(redo)
    if not todo.size:
        return tuple(result)
    # The digit rebuilt at the work size: the first mask (a hollowed stroke keeps its
    # outline) and what lies between its strokes as dark as they are (a hollowed inside).
    walls = _reduced(inked[todo], *small.shape[-2:])
    digit = walls | _walled(walls, small[todo], window[todo])
    for attempt in range(2):  # a window as large as the digit, then just beyond its strokes
        second = _opening_inside(small[todo], window[todo])
        work_buf = _work_buffers(second, k // 2)
        for _ in range(2):  # smoothed like the first estimate
            second = _rank_filter(second, k, np.add, work_buf) / np.float32(k * k)
        second = np.where(near[todo], np.minimum(second, ground[todo]), ground[todo])
        *part, _ = _masks(ink[todo], second)
        for out, values in zip(result, part, strict=True):
            out[todo] = values
        if attempt:
            break
        # The widest stroke: the largest square in the ink that both masks hold (the first
        # mask, rebuilt, has no ground the second estimate could not follow; the second
        # has the strokes whole).
        both = digit & _reduced(part[3], *small.shape[-2:])
        widest = STROKE_WINDOW * _widest_square(both) + 1
        closer = widest < window[todo]
        window[todo[closer]] = widest[closer]
        todo, digit = todo[closer], digit[closer]
        if not todo.size:
            break
    return tuple(result)


def _first_ground(stack: np.ndarray, work: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The first estimate of the ground at the work size: ``(ground, small copy, k)``.

    A min filter of 2k-1 then a max filter of k (an opening), then two box means of k.
    """
    h, w = stack.shape[-2:]
    scale = work / max(h, w)
    small = stack
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = _resize_each(stack, size, Image.Resampling.BOX)
    # Smaller images than the work size use proportionally smaller windows.
    k = GROUND_WINDOW if scale <= 1.0 else max(3, int(GROUND_WINDOW / scale) | 1)
    work_buf = _work_buffers(small, k - 1)  # every pass reuses the same two buffers
    ground = _rank_filter(small, 2 * k - 1, np.minimum, work_buf)
    ground = _rank_filter(ground, k, np.maximum, work_buf)
    for _ in range(2):  # two box means: a smooth ground, like a Gaussian blur
        ground = _rank_filter(ground, k, np.add, work_buf)
        ground /= np.float32(k * k)
    return ground.copy(), small, k


def _masks(ink: np.ndarray, ground: np.ndarray) -> tuple[np.ndarray, ...]:
    """Subtract the (enlarged) ground, threshold, clean.

    Returns ``(flat, thresholds, blank, mask, inked)``: `mask` is `inked` (every pixel
    over the threshold) cleaned by :func:`remove_specks`.
    """
    h, w = ink.shape[-2:]
    if ground.shape[-2:] != (h, w):
        ground = _resize_each(ground, (w, h), Image.Resampling.BILINEAR)
    flat = np.subtract(ink, ground)
    np.maximum(flat, 0.0, out=flat)  # ink and ground are both in 0..1
    thresholds, blank = ink_thresholds(flat)
    inked = (flat > thresholds[:, None, None]) & ~blank[:, None, None]
    return flat, thresholds, blank, remove_specks(inked), inked


def _hollowing_risk(
    ground: np.ndarray, small: np.ndarray, mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the first ground estimate may have hollowed the digit.

    Returns
    -------
    window : numpy.ndarray
        int ``(n,)``: :data:`DIGIT_WINDOW` of the larger side of the digit's box at the work
        size (at least the first estimate's window).
    near : numpy.ndarray
        bool ``(n, sh, sw)``: the digit's box widened by the window (a part of a hollowed
        digit may have been dropped as clutter, but not one farther off).
    redo : numpy.ndarray
        bool ``(n,)``: the first estimate rises near the digit by more than
        :data:`GROUND_RISE` of the ink's contrast.
    """
    n, h, w = mask.shape
    sh, sw = small.shape[-2:]
    found = mask.any(axis=(1, 2))
    top, bottom, left, right = (np.zeros(n, np.intp) for _ in range(4))
    if found.any():
        box = _boxes(mask[found])
        top[found], left[found] = box[0] * sh // h, box[2] * sw // w
        bottom[found], right[found] = -(-box[1] * sh // h), -(-box[3] * sw // w)
    side = np.maximum(bottom - top, right - left)
    window = np.maximum(np.ceil(DIGIT_WINDOW * side).astype(np.intp), 2 * k - 1)
    rows, cols = np.arange(sh)[:, None], np.arange(sw)[None, :]
    t, b, lft, r, reach = (a[:, None, None] for a in (top, bottom, left, right, window))
    near = (rows >= t - reach) & (rows < b + reach) & (cols >= lft - reach) & (cols < r + reach)
    levels = small.reshape(n, -1)
    lowest = levels.min(axis=1)
    rise = np.where(near, ground, -np.inf).reshape(n, -1).max(axis=1) - lowest
    return window, near, found & (rise > GROUND_RISE * (levels.max(axis=1) - lowest))


def _walled(mask: np.ndarray, levels: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """The inside of a hollowed stroke, not a hole or a gap between strokes.

    Pixels between two pixels of `mask` (left and right, or above and below), each at most
    the image's `gap` away, whose level is at least :data:`HOLLOW_LEVEL` of the lower of
    those two.
    """
    out = np.zeros_like(mask)
    reach = gap[:, None, None]
    for axis in (1, 2):
        size = mask.shape[axis]
        at = np.arange(size).reshape([size if a == axis else 1 for a in range(3)])
        before = np.maximum.accumulate(np.where(mask, at, -2 * size), axis=axis)
        flipped = np.flip(np.where(mask, at, 3 * size), axis=axis)
        after = np.flip(np.minimum.accumulate(flipped, axis=axis), axis=axis)
        walls = (
            np.take_along_axis(levels, np.clip(end, 0, size - 1), axis=axis)
            for end in (before, after)
        )
        between = (at - before <= reach) & (after - at <= reach)
        out |= between & (levels >= HOLLOW_LEVEL * np.minimum(*walls))
    return out


def _window_extreme(a: np.ndarray, size: int, op: np.ufunc, axis: int) -> np.ndarray:
    """``op`` over centred windows of odd `size` along `axis` (-1 or -2), inside the image only.

    Positions outside the image hold -1 (below any ink level): a minimum over a window that
    leaves the image is -1, and a maximum ignores them. Log-doubling: O(log size)
    whole-array operations.
    """
    a = np.swapaxes(a, axis, -1)
    half, n = size // 2, a.shape[-1]
    out = np.full((*a.shape[:-1], n + 2 * half), -1.0, dtype=a.dtype)
    out[..., half : half + n] = a
    span = 1  # out[..., i] covers padded[..., i : i + span]
    while 2 * span <= size:
        out = op(out[..., :-span], out[..., span:])
        span *= 2
    shift = size - span
    return np.swapaxes(op(out[..., :n], out[..., shift : shift + n]), -1, axis)


def _opening_inside(small: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Opening of each image of a stack with a square window of its own size.

    Only windows inside the image count. A window is capped at the image's shorter side
    and made odd (the max filter's window is then the min filter's, reflected).
    """
    out = np.empty_like(small)
    window = np.minimum(window, min(small.shape[-2:]))
    window -= window % 2 == 0
    for size in sorted(set(window.tolist())):
        chosen = window == size
        part = small[chosen]
        for op in (np.minimum, np.maximum):
            part = _window_extreme(_window_extreme(part, size, op, -1), size, op, -2)
        out[chosen] = part
    return out


def _reduced(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """A stack of masks at ``(h, w)``: a pixel is on where at least half of it is."""
    if mask.shape[-2:] == (h, w):
        return mask
    return _resize_each(mask.astype(np.float32), (w, h), Image.Resampling.BOX) >= 0.5


def _square3(mask: np.ndarray, combine: np.ufunc) -> np.ndarray:
    """3x3 erosion (``np.logical_and``) or dilation (``np.logical_or``) of a stack of masks.

    Past the edges counts as the edge pixel itself (the edges repeated).
    """
    out = mask.copy()
    for axis in (-1, -2):
        src = out.copy()
        ahead = [slice(None)] * out.ndim
        behind = [slice(None)] * out.ndim
        ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
        combine(out[tuple(ahead)], src[tuple(behind)], out=out[tuple(ahead)])
        combine(out[tuple(behind)], src[tuple(ahead)], out=out[tuple(behind)])
    return out


def _closed(mask: np.ndarray) -> np.ndarray:
    """3x3 closing of a stack of masks (a dilation, then an erosion; the edges repeated)."""
    return _square3(_square3(mask, np.logical_or), np.logical_and)


def _widest_square(mask: np.ndarray) -> np.ndarray:
    """Side of the largest odd square of ink in each mask of a stack (0 if empty).

    Past the image's edges counts as ink, so a stroke along an edge is measured whole
    (if anything, too wide: the safe side for a window that must not fit in it).
    """
    side = np.where(mask.any(axis=(1, 2)), 1, 0)
    inner = _closed(mask)  # cracks in a mask of a stroke are not gaps in its ink
    while inner.any():  # 3x3 erosions until nothing is left
        shrunk = _square3(inner, np.logical_and)
        if shrunk.all(axis=(1, 2)).any():  # the whole image is ink: nothing to measure
            shrunk[shrunk.all(axis=(1, 2))] = False
        side += 2 * shrunk.any(axis=(1, 2))
        inner = shrunk
    return side


def _histograms(stack: np.ndarray) -> np.ndarray:
    """256-bin histogram of each image of a stack of values in 0..1: ``(n, 256)``."""
    n = stack.shape[0]
    levels = stack.reshape(n, -1) * np.float32(255.0) + np.float32(0.5)
    np.minimum(levels, 255.0, out=levels)
    np.maximum(levels, 0.0, out=levels)
    bins = levels.astype(np.intp)
    bins += np.arange(0, n * 256, 256)[:, None]  # one run of 256 bins per image
    return np.bincount(bins.ravel(), minlength=n * 256).reshape(n, 256).astype(np.float64)


def _otsu(hist: np.ndarray) -> np.ndarray:
    """Otsu's threshold (0..1) of each row of ``(n, 256)`` histograms."""
    w0 = np.cumsum(hist, axis=-1)  # pixels at or below each level
    m0 = np.cumsum(hist * (np.arange(256) / 255.0), axis=-1)  # and the sum of their values
    total, mass = w0[..., -1:], m0[..., -1:]
    # The between-class variance w0 * w1 * (mean0 - mean1) ** 2, with the means divided out.
    # Where one class is empty (spread 0) the numerator is exactly 0 too: left as it is.
    spread = w0 * (total - w0)
    between = (m0 * total - mass * w0) ** 2
    np.divide(between, spread, out=between, where=spread > 0)
    return (np.argmax(between, axis=-1) + 0.5) / 255.0


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
    return float(_otsu(_histograms(np.asarray(values).reshape(1, -1)))[0])


def ink_thresholds(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ink level that separates strokes from ground, for each image of a stack.

    Otsu's threshold, but never below :data:`MIN_INK_FRACTION` of the strongest ink (the
    99.9th percentile), so faint noise on an almost empty page does not become strokes.

    Parameters
    ----------
    stack : numpy.ndarray
        ``(n, h, w)`` ink strength 0..1 (after :func:`flatten_background`).

    Returns
    -------
    thresholds : numpy.ndarray
        float ``(n,)``.
    blank : numpy.ndarray
        bool ``(n,)``: the strongest ink is below :data:`MIN_CONTRAST` (no digit).
    """
    hist = _histograms(stack)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # pixels at or above each level
    strongest = ((above >= 0.001 * above[:, :1]).sum(axis=1) - 1) / 255.0
    return np.maximum(_otsu(hist), MIN_INK_FRACTION * strongest), strongest < MIN_CONTRAST


def ink_threshold(ink: np.ndarray) -> float:
    """:func:`ink_thresholds` of one image.

    Raises
    ------
    ImageError
        ``no digit found`` when the strongest ink is below :data:`MIN_CONTRAST`.
    """
    thresholds, blank = ink_thresholds(ink[None])
    if blank[0]:
        raise ImageError("no digit found")
    return float(thresholds[0])


def _runs(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of a ``(n, h, w)`` mask: row (``image * h + y``), first and last column.

    Runs come in row-major order.
    """
    n, h, w = stack.shape
    padded = np.zeros((n * h, w + 2), dtype=bool)  # every row starts and ends with ground
    padded[:, 1:-1] = stack.reshape(n * h, w)
    flat = padded.ravel()
    first = np.flatnonzero(flat[1:] & ~flat[:-1]) + 1  # flat positions of run starts
    last = np.flatnonzero(flat[:-1] & ~flat[1:])  # and of run ends
    rows, starts = np.divmod(first, w + 2)
    return rows, starts - 1, last % (w + 2) - 1


def _label_runs(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, h: int) -> np.ndarray:
    """8-connected components of runs: for each run, the index of its component's first run.

    Runs of consecutive rows of one image touch when their column ranges overlap or meet at
    a corner. Neighbouring runs are found by binary search (runs are in row-major order, so
    keys ``row * big + column`` increase), then labels are propagated: every pair hooks the
    larger label onto the smaller, and pointer jumping shortens the chains, until stable.
    """
    n_runs = rows.size
    big = int(ends.max(initial=0)) + 3
    above = rows - 1
    lo = np.searchsorted(rows * big + ends, above * big + starts - 1, side="left")
    hi = np.searchsorted(rows * big + starts, above * big + ends + 1, side="right")
    counts = np.where(rows % h == 0, 0, np.maximum(hi - lo, 0))
    b = np.repeat(np.arange(n_runs), counts)
    first = np.cumsum(counts) - counts
    a = np.repeat(lo, counts) + np.arange(b.size) - np.repeat(first, counts)
    label = np.arange(n_runs)
    while True:
        la, lb = label[a], label[b]
        low = np.minimum(la, lb)
        new = label.copy()
        np.minimum.at(new, la, low)
        np.minimum.at(new, lb, low)
        while not np.array_equal(jumped := new[new], new):
            new = jumped
        if np.array_equal(new, label):
            return label
        label = new


def components(mask: np.ndarray) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """8-connected components of a mask.

    Parameters
    ----------
    mask : numpy.ndarray
        bool, 2-D.

    Returns
    -------
    list of (area, runs)
        One entry per component; ``runs`` are ``(row, first column, last column)``.
    """
    rows, starts, ends = _runs(mask[None])
    grouped: dict[int, list[tuple[int, int, int]]] = {}
    label = _label_runs(rows, starts, ends, mask.shape[0])
    for r, s, e, lab in zip(
        rows.tolist(), starts.tolist(), ends.tolist(), label.tolist(), strict=True
    ):
        grouped.setdefault(lab, []).append((r, s, e))
    return [(sum(e - s + 1 for _, s, e in runs), runs) for runs in grouped.values()]


def remove_specks(mask: np.ndarray, min_fraction: float = 0.05) -> np.ndarray:
    """Keep the pieces of ink that belong to the digit.

    Pieces smaller than `min_fraction` of the largest are dust. Pieces touching the image's
    edge (a table edge, the shadow of the phone, the border of a scan) are dropped too, when
    pieces clear of the edge hold at least a quarter as much ink: then they are the digit.
    Bands (shallow pieces running along half a side, or from one side to the opposite one)
    do not count in that comparison, as long as the pieces clear of the edge hold
    :data:`MIN_INNER_SHARE` of all the ink (a band up to about 50 times the digit) and one of
    them spans :data:`MIN_INNER_SPAN` of the image (a digit, not a speck).

    Parameters
    ----------
    mask : numpy.ndarray
        bool ink mask: one image ``(h, w)`` or a stack ``(n, h, w)``, each cleaned alone.
    min_fraction : float
        Pieces below this fraction of the largest kept piece's area are dust.

    Returns
    -------
    numpy.ndarray
        The cleaned mask.
    """
    stack, single = _as_stack(mask)
    n, h, w = stack.shape
    rows, starts, ends = _runs(stack)
    if rows.size == 0:
        return mask.copy()
    label = _label_runs(rows, starts, ends, h)
    roots = np.flatnonzero(label == np.arange(rows.size))
    image = rows[roots] // h
    pieces = np.bincount(image, minlength=n)
    if pieces.max() <= 1:  # one piece in each image: nothing to judge
        return mask.copy()
    multi = pieces > 1
    if not multi.all():  # judge only the images with several pieces
        out = stack.copy()
        out[multi] = remove_specks(stack[multi], min_fraction)
        return out[0] if single else out
    size, (top, bottom, left, right), (height, width) = _pieces(
        label, roots, rows, starts, ends, h, w
    )
    inner = top + bottom + left + right == 0
    # Bands: shallow, along half a side or from side to opposite side. A tightly cropped
    # digit touches every side too, but it is as deep as the image.
    across = (np.maximum(top, bottom) >= BAND_COVER * w) | ((left > 0) & (right > 0))
    down = (np.maximum(left, right) >= BAND_COVER * h) | ((top > 0) & (bottom > 0))
    band = (across & (height <= BAND_DEPTH * h)) | (down & (width <= BAND_DEPTH * w))
    span = np.maximum(height / h, width / w)
    total_ink = np.bincount(image, weights=size, minlength=n)
    inner_ink = np.bincount(image, weights=size * inner, minlength=n)
    band_ink = np.bincount(image, weights=size * band, minlength=n)
    widest_inner = np.zeros(n)
    np.maximum.at(widest_inner, image, span * inner)
    # Bands are left out of the comparison only for a digit-sized inner piece, not a speck.
    digit_inside = (inner_ink >= MIN_INNER_SHARE * total_ink) & (widest_inner >= MIN_INNER_SPAN)
    other_ink = total_ink - inner_ink - np.where(digit_inside, band_ink, 0.0)
    has_inner = np.bincount(image, weights=inner, minlength=n) > 0
    use_inner = has_inner & (inner_ink >= 0.25 * other_ink)
    candidate = np.where(use_inner[image], inner, True)
    largest = np.zeros(n)
    np.maximum.at(largest, image[candidate], size[candidate])
    keep_root = candidate & (size >= min_fraction * largest[image])
    keep = np.zeros(rows.size, dtype=bool)
    keep[roots] = keep_root
    flat = stack.reshape(n * h, w)
    run_starts = flat.copy()
    run_starts[:, 1:] &= ~flat[:, :-1]
    run_of_pixel = np.cumsum(run_starts.ravel()).reshape(n * h, w) - 1
    out = (flat & keep[label][run_of_pixel]).reshape(stack.shape)
    return out[0] if single else out


def _pieces(
    label: np.ndarray,
    roots: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    h: int,
    w: int,
) -> tuple[np.ndarray, tuple[np.ndarray, ...], tuple[np.ndarray, np.ndarray]]:
    """Each piece's pixels, its pixels on each side of the image, its height and width.

    Pieces are in the order of `roots`; the sides are top, bottom, left and right.
    """
    y = rows % h
    run_length = ends - starts + 1
    size, *sides = (
        np.bincount(label, weights=weights, minlength=label.size)[roots]
        for weights in (
            run_length,
            run_length * (y == 0),
            run_length * (y == h - 1),
            starts == 0,
            ends == w - 1,
        )
    )
    extent = []  # first and last row and column of each piece
    for values, init, reduce in (
        (rows, rows.max() + 1, np.minimum),
        (rows, -1, np.maximum),
        (starts, w, np.minimum),
        (ends, -1, np.maximum),
    ):
        out = np.full(label.size, init)
        reduce.at(out, label, values)
        extent.append(out[roots])
    first_row, last_row, first_col, last_col = extent
    return size, tuple(sides), (last_row - first_row + 1, last_col - first_col + 1)


def ink_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(top, bottom, left, right)`` (end-exclusive) of a mask's on-pixels.

    Raises
    ------
    ImageError
        ``no digit found`` if the mask is empty.
    """
    if not mask.any():
        raise ImageError("no digit found")
    top, bottom, left, right = (int(edge[0]) for edge in _boxes(mask[None]))
    return top, bottom, left, right


def _boxes(stack: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`ink_box` of each image of a ``(n, h, w)`` stack (each must hold ink)."""
    rows, cols = stack.any(axis=2), stack.any(axis=1)
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    bottom = stack.shape[1] - rows[:, ::-1].argmax(axis=1)
    right = stack.shape[2] - cols[:, ::-1].argmax(axis=1)
    return top, bottom, left, right


def glyph_width(height: int | np.ndarray, width: int | np.ndarray) -> int | np.ndarray:
    """Width in the 32x32 bitmap of a glyph whose ink box is `height` x `width`.

    NIST stretches every glyph to 20 pixels wide, but Digits' 1s are not 20-pixel slabs: a
    narrow glyph keeps at most :data:`MAX_WIDEN` times its own proportions. Works on
    arrays of sizes too.
    """
    out = np.minimum(BOX_WIDTH, np.maximum(1, np.rint(BOX_HEIGHT * width / height * MAX_WIDEN)))
    return out.astype(np.intp) if isinstance(out, np.ndarray) else int(out)


@functools.lru_cache(maxsize=4096)
def _resample_weights(size_in: int, size_out: int, bilinear: bool) -> np.ndarray:
    """Pillow's resampling of `size_in` pixels to `size_out` as a ``(size_out, size_in)`` matrix.

    The BILINEAR (triangle) or BOX filter, widened by the reduction factor when reducing,
    with the weights ``Image.resize`` computes.
    """
    scale = size_in / size_out
    x = (np.arange(size_in)[None, :] - (np.arange(size_out)[:, None] + 0.5) * scale + 0.5) / max(
        scale, 1.0
    )
    weights = np.maximum(0.0, 1.0 - np.abs(x)) if bilinear else ((x > -0.5) & (x <= 0.5)) * 1.0
    return weights / weights.sum(axis=1, keepdims=True)


def normalise_bitmap(
    ink: np.ndarray, mask: np.ndarray, threshold: float | np.ndarray
) -> np.ndarray:
    """Stretch the ink in `mask`'s box to the 20x32 box and centre it in a 32x32 bitmap.

    A glyph shorter than 32 pixels is enlarged from its grey levels (bilinear: smooth edges);
    a larger one is reduced from its mask by area (box filter), a pixel being on when at
    least :data:`REDUCE_COVER` of it is ink, so that thin pen strokes survive
    (:func:`normalise_strokes` then evens the stroke width). The resampling is Pillow's,
    done as two matrix products so that a whole stack of images takes one.

    Parameters
    ----------
    ink : numpy.ndarray
        Ink strength: one image ``(h, w)`` or a stack ``(n, h, w)``.
    mask : numpy.ndarray
        bool ink mask (cleaned), same shape.
    threshold : float or numpy.ndarray
        The ink level of :func:`ink_threshold` (one per image for a stack).

    Returns
    -------
    numpy.ndarray
        bool ``(32, 32)`` (or ``(n, 32, 32)``): ink in the top and bottom rows, horizontally
        centred.

    Raises
    ------
    ImageError
        ``no digit found`` if a mask is empty.
    """
    masks, single = _as_stack(mask)
    inks = _as_stack(ink)[0]
    if not masks.any(axis=(1, 2)).all():
        raise ImageError("no digit found")
    n = masks.shape[0]
    top, bottom, left, right = _boxes(masks)
    # Work on the part of the images that holds ink (for one image: its box).
    y0, y1, x0, x1 = top.min(), bottom.max(), left.min(), right.max()
    masks, inks = masks[:, y0:y1, x0:x1], inks[:, y0:y1, x0:x1]
    top, bottom, left, right = top - y0, bottom - y0, left - x0, right - x0
    height, width = bottom - top, right - left
    out_width = glyph_width(height, width)
    enlarge = height < BOX_HEIGHT
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n,))
    # What is resampled: grey levels relative to the threshold (enlarging), else the mask.
    levels = inks / thresholds[:, None, None]
    levels[~enlarge] = 1.0
    np.multiply(levels, masks, out=levels)
    rows = np.zeros((n, 32, masks.shape[1]))
    cols = np.zeros((n, masks.shape[2], 32))  # transposed: the product needs no copy
    for i, (t, b, lft, r, w, up) in enumerate(
        zip(*(a.tolist() for a in (top, bottom, left, right, out_width, enlarge)), strict=True)
    ):
        rows[i, :, t:b] = _resample_weights(b - t, BOX_HEIGHT, up)
        x0 = (32 - w) // 2
        cols[i, lft:r, x0 : x0 + w] = _resample_weights(r - lft, w, up).T
    resampled = rows @ levels @ cols
    # Exact coverage ties (a quarter of a pixel) are common: decide them the same whatever
    # the order of the sums.
    out = resampled >= np.where(enlarge, 1.0, REDUCE_COVER)[:, None, None] - 1e-9
    return out[0] if single else out


#: Bits set in each byte value.
_BIT_COUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_ROW = np.uint64(0xFFFF_FFFF)  # the 32 columns of a packed row


def _pack(bitmaps: np.ndarray) -> np.ndarray:
    """``(n, 32, 32)`` bool bitmaps as ``(n, 32)`` uint64 rows, column 0 in bit 31."""
    return np.packbits(bitmaps, axis=-1).view(">u4")[..., 0].astype(np.uint64)


def _unpack(rows: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_pack`."""
    octets = rows.astype(">u4").view(np.uint8).reshape(*rows.shape, 4)
    return np.unpackbits(octets, axis=-1).view(bool)


def _on_pixels(rows: np.ndarray) -> np.ndarray:
    """On-pixels of each packed bitmap ``(n, 32)``: ``(n,)``."""
    n = rows.shape[0]
    return _BIT_COUNT[rows.astype(">u4").view(np.uint8)].reshape(n, -1).sum(axis=1)


def _erode(rows: np.ndarray) -> np.ndarray:
    """4-neighbour erosion of packed bitmaps; pixels outside the bitmap do not count."""
    out = rows & ((rows >> 1) | np.uint64(1 << 31)) & ((rows << 1) | np.uint64(1))
    out[:, 1:] &= rows[:, :-1]
    out[:, :-1] &= rows[:, 1:]
    return out


def _dilate(rows: np.ndarray) -> np.ndarray:
    """4-neighbour dilation of packed bitmaps."""
    out = rows | (rows >> 1) | ((rows << 1) & _ROW)
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _strokes_packed(rows: np.ndarray) -> np.ndarray:
    on = _on_pixels(rows)
    out = rows.copy()
    for times, step, chosen in (
        (2, _erode, on > 560),
        (1, _erode, (on > 412) & (on <= 560)),
        (1, _dilate, (on >= 108) & (on < 256)),
        (2, _dilate, on < 108),
    ):
        if chosen.any():
            changed = rows[chosen]
            for _ in range(times):
                changed = step(changed)
            out[chosen] = changed
    return out


def normalise_strokes(bitmap: np.ndarray) -> np.ndarray:
    """NIST's stroke-width normalisation by on-pixel count (4-neighbour erode/dilate).

    More than 560 on-pixels: erode twice; 413-560: once; 256-412: as is; 108-255: dilate
    once; fewer than 108: dilate twice.

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool ``(32, 32)``, or a stack ``(n, 32, 32)`` (each image judged alone).

    Returns
    -------
    numpy.ndarray
        Same shape.
    """
    stack, single = _as_stack(bitmap)
    out = _unpack(_strokes_packed(_pack(stack)))
    return out[0] if single else out


def _first_column(rows: np.ndarray) -> np.ndarray:
    """Column of the leftmost on-pixel of packed rows (32 for an empty row)."""
    return 32 - np.frexp(rows.astype(np.float64))[1]


def _deslant_packed(rows: np.ndarray) -> np.ndarray:
    n, n_rows = rows.shape
    inked = rows != 0
    top = inked.argmax(axis=1)
    bottom = n_rows - 1 - inked[:, ::-1].argmax(axis=1)
    images = np.arange(n)
    left_top = _first_column(rows[images, top])
    left_bottom = _first_column(rows[images, bottom])
    slope = np.where(bottom > top, (left_bottom - left_top) / np.maximum(bottom - top, 1), 0.0)
    shifts = np.rint(slope[:, None] * (np.arange(n_rows) - (top + bottom)[:, None] / 2))
    # Row y takes its pixels from `shift` columns to its right: a left shift of the bits.
    left = np.clip(shifts, 0, 63).astype(np.uint64)
    right = np.clip(-shifts, 0, 63).astype(np.uint64)
    return ((rows << left) & _ROW) >> right


def remove_slant(bitmap: np.ndarray) -> np.ndarray:
    """Shear rows so the left edges of the top and bottom inked rows line up (NIST deslant).

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool ``(32, 32)``, or a stack ``(n, 32, 32)``.

    Returns
    -------
    numpy.ndarray
        Same shape; ink shifted past the sides is cut off.
    """
    stack, single = _as_stack(bitmap)
    out = _unpack(_deslant_packed(_pack(stack)))
    return out[0] if single else out


#: Shifts that bring each 4-column block of a packed row into the low 4 bits.
_BLOCK_SHIFTS = np.arange(28, -1, -4, dtype=np.uint64)


def _counts_packed(rows: np.ndarray) -> np.ndarray:
    nibbles = (rows[:, :, None] >> _BLOCK_SHIFTS) & np.uint64(0xF)
    return _BIT_COUNT[nibbles].reshape(-1, 8, 4, 8).sum(axis=2, dtype=np.intp)


def block_counts(bitmap: np.ndarray) -> np.ndarray:
    """Count the on-pixels of each 4x4 block of a 32x32 bitmap.

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool ``(32, 32)``, or a stack ``(n, 32, 32)``.

    Returns
    -------
    numpy.ndarray
        int ``(8, 8)`` (or ``(n, 8, 8)``), values 0..16.
    """
    stack, single = _as_stack(bitmap)
    out = _counts_packed(_pack(stack))
    return out[0] if single else out


def bitmaps_from_masks(
    ink: np.ndarray, mask: np.ndarray, thresholds: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The NIST steps after the ink mask, for a stack: specks, 20x32 stretch, strokes, deslant.

    Parameters
    ----------
    ink : numpy.ndarray
        ``(n, h, w)`` ink strength.
    mask : numpy.ndarray
        bool ``(n, h, w)`` ink mask, before :func:`remove_specks`.
    thresholds : float or numpy.ndarray
        The ink level of each mask (see :func:`normalise_bitmap`).

    Returns
    -------
    bitmaps : numpy.ndarray
        bool ``(n, 32, 32)``; empty where the cleaned mask is.
    found : numpy.ndarray
        bool ``(n,)``: the cleaned mask holds ink.
    """
    return bitmaps_from_cleaned(ink, remove_specks(mask), thresholds)


def bitmaps_from_cleaned(
    ink: np.ndarray, mask: np.ndarray, thresholds: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bitmaps_from_masks` of a mask already cleaned by :func:`remove_specks`."""
    found = mask.any(axis=(1, 2))
    bitmaps = np.zeros((len(mask), 32, 32), dtype=bool)
    if found.any():
        levels = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), found.shape)
        bitmap = normalise_bitmap(ink[found], mask[found], levels[found])
        bitmaps[found] = _unpack(_deslant_packed(_strokes_packed(_pack(bitmap))))
    return bitmaps, found


def bitmaps_from_inks(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The normalised 32x32 bitmaps of a stack of same-sized ink maps (every step but counting).

    Parameters
    ----------
    ink : numpy.ndarray
        ``(n, h, w)`` ink strength 0..1 (:func:`ink_strength`).

    Returns
    -------
    bitmaps : numpy.ndarray
        bool ``(n, 32, 32)``; empty where no digit was found.
    found : numpy.ndarray
        bool ``(n,)``: False for a blank image (``no digit found``).
    """
    flat, thresholds, _, mask = ink_masks(ink)
    return bitmaps_from_cleaned(flat, mask, thresholds)


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
    bitmaps, found = bitmaps_from_inks(ink_strength(to_gray(img), invert)[None])
    if not found[0]:
        raise ImageError("no digit found")
    return bitmaps[0]


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
    except Exception as exc:  # noqa: BLE001 - an odd file is that file's error, never a crash
        raise _image_error(exc) from None


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


#: Images of one size are converted together in stacks of at most this many pixels.
STACK_PIXELS = 1 << 20


def _convert_grays(
    grays: Iterable[tuple[int, np.ndarray]],
    out: list[np.ndarray | ImageError],
    invert: bool | None,
) -> None:
    """Convert ``(index, grey image)`` pairs into ``out[index]``, same-sized ones as stacks.

    The grey images are :func:`_gray_pixels`. Images wait by size and type; a full stack
    (about :data:`STACK_PIXELS` pixels) is converted at once, so few decoded images are held
    at a time.
    """

    def convert(part: list[tuple[int, np.ndarray]]) -> None:
        try:
            ink = ink_strength(_scaled(np.stack([gray for _, gray in part])), invert)
            bitmaps, found = bitmaps_from_inks(ink)
        except Exception as exc:  # noqa: BLE001 - should not happen: say so per file
            for i, _ in part:
                out[i] = _image_error(exc)
            return
        counts = block_counts(bitmaps).reshape(-1, 64).astype(np.float64)
        for (i, _), features, ok in zip(part, counts, found, strict=True):
            out[i] = features if ok else ImageError("no digit found")

    waiting: dict[tuple[object, ...], list[tuple[int, np.ndarray]]] = {}
    for i, gray in grays:
        key = (*gray.shape, gray.dtype)
        part = waiting.setdefault(key, [])
        part.append((i, gray))
        if len(part) * gray.size >= STACK_PIXELS:
            convert(waiting.pop(key))
    for part in waiting.values():
        convert(part)


def features_from_images(
    images: Iterable[Image.Image], invert: bool | None = None
) -> list[np.ndarray | ImageError]:
    """Digits features of decoded images, same-sized ones converted together as stacks.

    The result is the same as :func:`features_from_image` on each image.

    Parameters
    ----------
    images : iterable of PIL.Image.Image
        The images (consumed lazily).
    invert : bool or None
        Polarity, see :func:`ink_strength`.

    Returns
    -------
    list of numpy.ndarray or ImageError
        For each image, its ``(64,)`` features or ``no digit found``.
    """
    out: list[np.ndarray | ImageError] = []

    def grays() -> Iterator[tuple[int, np.ndarray]]:
        for i, img in enumerate(images):
            out.append(ImageError("not converted"))
            yield i, _gray_pixels(img)

    _convert_grays(grays(), out, invert)
    return out


def features_from_paths(
    paths: list[str], invert: bool | None = None
) -> list[np.ndarray | ImageError]:
    """Digits features of many image files, converted in stacks of same-sized images.

    Each file is decoded on its own; then the images of one size go through the conversion
    together (one numpy operation per step for the whole stack instead of one per image).
    The result is the same as :func:`features_from_path` on each file.

    Parameters
    ----------
    paths : list of str
        Image files.
    invert : bool or None
        Polarity, see :func:`ink_strength`.

    Returns
    -------
    list of numpy.ndarray or ImageError
        For each path, its ``(64,)`` features or the error that stopped it.
    """
    out: list[np.ndarray | ImageError] = [ImageError("not converted")] * len(paths)

    def grays() -> Iterator[tuple[int, np.ndarray]]:
        for i, path in enumerate(paths):
            try:
                gray = _gray_pixels(open_image(path))
            except Exception as exc:  # noqa: BLE001 - that file's error, never a crash
                out[i] = _image_error(exc)
                continue
            yield i, gray

    _convert_grays(grays(), out, invert)
    return out
