"""NIST: an ink mask -> the 32x32 bitmap of NIST's normalisation -> the 8x8 block counts.

The steps of NIST's ``norm_2nd_gen2``, as UCI's optdigits (scikit-learn's Digits) were made:
crop to the ink's box, stretch to :data:`BOX_WIDTH` x :data:`BOX_HEIGHT` (aspect not kept),
centre in 32x32, even the stroke width by on-pixel count, remove the slant by a shear, and
count each 4x4 block's on-pixels (0..16).

Bitmaps travel packed: a stack of ``n`` bitmaps is ``(n, 32)`` uint64, one row per word,
column 0 in bit 31 (:func:`pack`, :func:`unpack`), so erosions, shears and counts are a few
integer operations on the whole stack.
"""

from __future__ import annotations

import functools

import numpy as np

from digitcli.conversion.pieces import ink_boxes
from digitcli.errors import ImageError

#: NIST's box: glyphs are stretched to this height and (at most) this width.
BOX_HEIGHT, BOX_WIDTH = 32, 20


#: When a glyph is reduced to the box, a pixel is on if at least this fraction of it is ink.
REDUCE_COVER = 0.25


#: A narrow glyph is widened to at most this many times its own width-to-height ratio.
MAX_WIDEN = 1.5
#: At least this many glyphs are resampled together (:func:`normalise_bitmap`).
SIZE_BUCKET = 24
#: NIST's stroke-width bands of on-pixel counts (of 1024): above ERODE_TWICE_ABOVE erode
#: twice, above KEEP_ABOVE once; KEEP_FROM..KEEP_ABOVE as is (98.6% of Digits); below
#: KEEP_FROM dilate once, below DILATE_TWICE_BELOW twice.
ERODE_TWICE_ABOVE = 560
KEEP_ABOVE = 412
KEEP_FROM = 256
DILATE_TWICE_BELOW = 108


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
        ``(n, h, w)`` ink strength.
    mask : numpy.ndarray
        bool ``(n, h, w)`` ink masks (cleaned).
    threshold : float or numpy.ndarray
        The ink level of the strokes (one per image, or one for all).

    Returns
    -------
    numpy.ndarray
        bool ``(n, 32, 32)``: ink in the top and bottom rows, horizontally centred.

    Raises
    ------
    ImageError
        ``no digit found`` if a mask is empty.
    """
    if not mask.any(axis=(1, 2)).all():
        raise ImageError("no digit found")
    n = mask.shape[0]
    boxes = ink_boxes(mask)
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n,))
    if n < 2 * SIZE_BUCKET:
        return _normalised(ink, mask, boxes, thresholds)
    # The products cost the stack's common box for every glyph: glyphs of like widths are
    # resampled together, each group in its own box.
    out = np.empty((n, 32, 32), dtype=bool)
    order = np.argsort(boxes[3] - boxes[2], kind="stable")
    for part in np.array_split(order, n // SIZE_BUCKET):
        out[part] = _normalised(ink, mask, tuple(b[part] for b in boxes), thresholds[part], part)
    return out


def _normalised(
    ink: np.ndarray,
    mask: np.ndarray,
    boxes: tuple[np.ndarray, ...],
    thresholds: np.ndarray,
    part: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`normalise_bitmap` of glyphs `part` of a stack (all: None), given their ink boxes."""
    top, bottom, left, right = boxes
    # Work on the part of the images that holds ink (for one image: its box).
    y0, y1, x0, x1 = top.min(), bottom.max(), left.min(), right.max()
    pick = slice(None) if part is None else part
    masks, inks = mask[pick, y0:y1, x0:x1], ink[pick, y0:y1, x0:x1]
    n = masks.shape[0]
    top, bottom, left, right = top - y0, bottom - y0, left - x0, right - x0
    height, width = bottom - top, right - left
    out_width = glyph_width(height, width)
    enlarge = height < BOX_HEIGHT
    # What is resampled: grey levels relative to the threshold (enlarging), else the mask.
    levels = np.ones(masks.shape)
    np.divide(inks, thresholds[:, None, None], out=levels, where=enlarge[:, None, None])
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
    return resampled >= np.where(enlarge, 1.0, REDUCE_COVER)[:, None, None] - 1e-9


#: Bits set in each byte value.
_BIT_COUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


_ROW = np.uint64(0xFFFF_FFFF)  # the 32 columns of a packed row


def pack(bitmaps: np.ndarray) -> np.ndarray:
    """``(n, 32, 32)`` bool bitmaps as ``(n, 32)`` uint64 rows, column 0 in bit 31."""
    return np.packbits(bitmaps, axis=-1).view(">u4")[..., 0].astype(np.uint64)


def unpack(rows: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pack`: ``(n, 32)`` packed rows as bool ``(n, 32, 32)``."""
    octets = rows.astype(">u4").view(np.uint8).reshape(*rows.shape, 4)
    return np.unpackbits(octets, axis=-1).view(bool)


def on_pixels(rows: np.ndarray) -> np.ndarray:
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


def normalise_strokes(rows: np.ndarray) -> np.ndarray:
    """NIST's stroke-width normalisation by on-pixel count (4-neighbour erode/dilate).

    More than 560 on-pixels: erode twice; 413-560: once; 256-412: as is; 108-255: dilate
    once; fewer than 108: dilate twice.

    Parameters
    ----------
    rows : numpy.ndarray
        Packed bitmaps ``(n, 32)`` (:func:`pack`), each judged alone.

    Returns
    -------
    numpy.ndarray
        Packed bitmaps ``(n, 32)``.
    """
    on = on_pixels(rows)
    out = rows.copy()
    for times, step, chosen in (
        (2, _erode, on > ERODE_TWICE_ABOVE),
        (1, _erode, (on > KEEP_ABOVE) & (on <= ERODE_TWICE_ABOVE)),
        (1, _dilate, (on >= DILATE_TWICE_BELOW) & (on < KEEP_FROM)),
        (2, _dilate, on < DILATE_TWICE_BELOW),
    ):
        if chosen.any():
            changed = rows[chosen]
            for _ in range(times):
                changed = step(changed)
            out[chosen] = changed
    return out


def _first_column(rows: np.ndarray) -> np.ndarray:
    """Column of the leftmost on-pixel of packed rows (32 for an empty row)."""
    return 32 - np.frexp(rows.astype(np.float64))[1]


def remove_slant(rows: np.ndarray) -> np.ndarray:
    """Shear rows so the left edges of the top and bottom inked rows line up (NIST deslant).

    Parameters
    ----------
    rows : numpy.ndarray
        Packed bitmaps ``(n, 32)`` (:func:`pack`).

    Returns
    -------
    numpy.ndarray
        Packed bitmaps ``(n, 32)``; ink shifted past the sides is cut off.
    """
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


#: Shifts that bring each 4-column block of a packed row into the low 4 bits.
_BLOCK_SHIFTS = np.arange(28, -1, -4, dtype=np.uint64)


def block_counts(rows: np.ndarray) -> np.ndarray:
    """Count the on-pixels of each 4x4 block of 32x32 bitmaps.

    Parameters
    ----------
    rows : numpy.ndarray
        Packed bitmaps ``(n, 32)`` (:func:`pack`).

    Returns
    -------
    numpy.ndarray
        int ``(n, 8, 8)``, values 0..16.
    """
    nibbles = (rows[:, :, None] >> _BLOCK_SHIFTS) & np.uint64(0xF)
    return _BIT_COUNT[nibbles].reshape(-1, 8, 4, 8).sum(axis=2, dtype=np.intp)


def nist_steps(
    ink: np.ndarray, mask: np.ndarray, thresholds: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NIST's steps after the cleaned ink mask: 20x32 stretch, stroke width, slant.

    Parameters
    ----------
    ink : numpy.ndarray
        ``(n, h, w)`` ink strength.
    mask : numpy.ndarray
        bool ``(n, h, w)`` ink masks, cleaned of specks.
    thresholds : float or numpy.ndarray
        The ink level of each mask (see :func:`normalise_bitmap`).

    Returns
    -------
    rows : numpy.ndarray
        Packed bitmaps ``(n, 32)`` (:func:`pack`); empty where the mask is.
    found : numpy.ndarray
        bool ``(n,)``: the mask holds ink.
    """
    found = mask.any(axis=(1, 2))
    rows = np.zeros((len(mask), 32), dtype=np.uint64)
    if found.size and found.all():  # no copies to leave the empty masks out
        rows[:] = remove_slant(normalise_strokes(pack(normalise_bitmap(ink, mask, thresholds))))
    elif found.any():
        levels = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), found.shape)
        bitmaps = normalise_bitmap(ink[found], mask[found], levels[found])
        rows[found] = remove_slant(normalise_strokes(pack(bitmaps)))
    return rows, found
