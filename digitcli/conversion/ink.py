"""Ink: grey levels -> how much ink each pixel holds, the ground removed, and the ink mask.

Either polarity is found from the border; shadows, uneven light and tinted paper are
removed by a ground estimate that cannot climb onto a stroke (:func:`ink_masks`); Otsu's
threshold gives the mask, cleaned of specks and bands by :mod:`digitcli.conversion.pieces`.
Everything works on stacks ``(n, h, w)`` of same-sized images.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from digitcli.conversion.pieces import ink_boxes, remove_specks

#: Ink contrast (0..1) below which an image counts as blank.
MIN_CONTRAST = 0.1


#: Strokes are at least this fraction of the strongest ink.
MIN_INK_FRACTION = 0.15


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
    return _ground_removed(ink, work, clean=True)


def ink_levels(ink: np.ndarray, work: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ink_masks` without its cleaned masks: ``(flat, thresholds, blank)``.

    The same values as the first three of :func:`ink_masks`, for a caller that makes its
    own mask from them (a line of digits): the masks are not cleaned
    (:func:`remove_specks`) where that only served the mask returned.
    """
    flat, thresholds, blank, _ = _ground_removed(ink, work, clean=False)
    return flat, thresholds, blank


def _ground_removed(ink: np.ndarray, work: int, *, clean: bool) -> tuple[np.ndarray, ...]:
    """:func:`ink_masks`; without `clean`, the mask returned is not all cleaned (not to use).

    The ground estimate needs one cleaned mask, whatever `clean`: that of the first
    attempt at a second estimate (the widest stroke is measured in it).
    """
    ink = ink.astype(np.float32, copy=False)
    ground, small, k = _first_ground(ink, work)
    *result, inked = _masks(ink, ground, clean=clean)
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
        *part, _ = _masks(ink[todo], second, clean=clean or not attempt)
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


def _masks(ink: np.ndarray, ground: np.ndarray, *, clean: bool = True) -> tuple[np.ndarray, ...]:
    """Subtract the (enlarged) ground, threshold, clean.

    Returns ``(flat, thresholds, blank, mask, inked)``: `mask` is `inked` (every pixel
    over the threshold) cleaned by :func:`remove_specks`; without `clean`, `inked` itself.
    """
    h, w = ink.shape[-2:]
    if ground.shape[-2:] != (h, w):
        ground = _resize_each(ground, (w, h), Image.Resampling.BILINEAR)
    flat = np.subtract(ink, ground)
    np.maximum(flat, 0.0, out=flat)  # ink and ground are both in 0..1
    thresholds, blank = ink_thresholds(flat)
    inked = (flat > thresholds[:, None, None]) & ~blank[:, None, None]
    return flat, thresholds, blank, remove_specks(inked) if clean else inked, inked


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
        box = ink_boxes(mask[found])
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


def otsu_level(values: np.ndarray) -> float:
    """Otsu's threshold (0..1) of any set of values in 0..1 (0.0 when there are none)."""
    if not values.size:
        return 0.0
    return float(_otsu(_histograms(values.reshape(1, -1)))[0])


def ink_thresholds(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ink level that separates strokes from ground, for each image of a stack.

    Otsu's threshold, but never below :data:`MIN_INK_FRACTION` of the strongest ink (the
    99.9th percentile), so faint noise on an almost empty page does not become strokes.

    Parameters
    ----------
    stack : numpy.ndarray
        ``(n, h, w)`` ink strength 0..1 (the ground removed).

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
