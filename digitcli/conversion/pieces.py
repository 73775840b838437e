"""Pieces: the 8-connected pieces of a stack of ink masks, their boxes, specks and bands.

Pieces are found from horizontal runs (:func:`piece_table` for each piece's size, box and
sides). :func:`remove_specks` keeps the pieces that belong to the digit. The reader of whole
numbers builds on the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A piece of ink no deeper than this fraction of the image, running along BAND_COVER of a
#: side or from side to opposite side, is the edge of the paper, a shadow or a table ...
BAND_DEPTH = 0.25
BAND_COVER = 0.5
#: ... when the pieces clear of the edge hold at least this share of all the ink and one of
#: them spans at least MIN_INNER_SPAN of the image's height or width: then they are the digit.
MIN_INNER_SHARE = 0.02
MIN_INNER_SPAN = 0.1
#: A piece counts as a digit beside others (:func:`digits_side_by_side`) when it is this
#: tall, relative to the tallest, and holds this share of the largest piece's ink.
SIDE_BY_SIDE_HEIGHT = 0.6
SIDE_BY_SIDE_SIZE = 0.25
#: Pieces side by side narrower in all than this share of the tallest's height are one digit.
SIDE_BY_SIDE_WIDTH = 1.0


def runs(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


@dataclass(frozen=True)
class PieceTable:
    """The 8-connected pieces of a stack of masks ``(n, h, w)``, one entry per piece.

    Pieces come in the order of their first pixel (image by image, row-major). Boxes are
    end-exclusive; ``sides`` counts each piece's pixels on the image's top, bottom, left
    and right side.
    """

    image: np.ndarray
    size: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray
    sides: np.ndarray
    shape: tuple[int, int, int]
    _run_piece: np.ndarray
    _mask: np.ndarray
    _runs: tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, starts, ends (:func:`runs`)

    def __len__(self) -> int:
        """The number of pieces."""
        return int(self.size.size)

    def labels(self) -> np.ndarray:
        """Each pixel's piece: int ``(n, h, w)``, -1 on ground, else the piece's index."""
        n, h, w = self.shape
        flat = self._mask.reshape(n * h, w)
        run_starts = flat.copy()
        run_starts[:, 1:] &= ~flat[:, :-1]
        run_of_pixel = np.cumsum(run_starts.ravel()).reshape(n * h, w) - 1
        if not self._run_piece.size:
            return np.full(self.shape, -1, dtype=np.intp)
        out = np.where(flat, self._run_piece[np.maximum(run_of_pixel, 0)], -1)
        return out.reshape(self.shape)

    def keep(self, chosen: np.ndarray) -> np.ndarray:
        """The mask of the chosen pieces: `chosen` is bool ``(len(self),)``.

        The runs of the other pieces are cleared from a copy of the mask, so the work
        grows with the ink dropped, not with the stack.
        """
        w = self.shape[2]
        out = np.array(self._mask, dtype=bool, order="C")
        if not self._run_piece.size:
            return out
        dropped = ~np.asarray(chosen, dtype=bool)[self._run_piece]
        rows, starts, ends = (a[dropped] for a in self._runs)
        lengths = ends - starts + 1
        # Each dropped pixel's place in the flat mask: its run's first, plus its place in it.
        skip = np.repeat(rows * w + starts - (np.cumsum(lengths) - lengths), lengths)
        out.reshape(-1)[skip + np.arange(skip.size)] = False
        return out


def piece_table(stack: np.ndarray) -> PieceTable:
    """Find the 8-connected pieces of each mask of a stack.

    Parameters
    ----------
    stack : numpy.ndarray
        bool ``(n, h, w)``.

    Returns
    -------
    PieceTable
        Each piece's image, size, box and pixels on each side.
    """
    rows, starts, ends = runs(stack)
    label = _label_runs(rows, starts, ends, stack.shape[1])
    return _table(stack, rows, starts, ends, label, np.flatnonzero(label == np.arange(rows.size)))


def _table(
    stack: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    label: np.ndarray,
    roots: np.ndarray,
) -> PieceTable:
    """:func:`piece_table` from the runs of the stack, their labels and each piece's first run."""
    n, h, w = stack.shape
    piece_of_root = np.zeros(rows.size, dtype=np.intp)
    piece_of_root[roots] = np.arange(roots.size)
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
        (rows, n * h, np.minimum),
        (rows, -1, np.maximum),
        (starts, w, np.minimum),
        (ends, -1, np.maximum),
    ):
        out = np.full(label.size, init)
        reduce.at(out, label, values)
        extent.append(out[roots])
    first_row, last_row, first_col, last_col = extent
    return PieceTable(
        image=rows[roots] // h,
        size=size.astype(np.intp),
        top=first_row % h,
        bottom=last_row % h + 1,
        left=first_col,
        right=last_col + 1,
        sides=np.stack(sides, axis=1).astype(np.intp) if roots.size else np.zeros((0, 4), np.intp),
        shape=(n, h, w),
        _run_piece=piece_of_root[label],
        _mask=stack,
        _runs=(rows, starts, ends),
    )


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
        bool ``(n, h, w)`` ink masks, each cleaned alone.
    min_fraction : float
        Pieces below this fraction of the largest kept piece's area are dust.

    Returns
    -------
    numpy.ndarray
        The cleaned mask.
    """
    n, h, w = mask.shape
    rows, starts, ends = runs(mask)
    if rows.size == 0:
        return mask.copy()
    label = _label_runs(rows, starts, ends, h)
    roots = np.flatnonzero(label == np.arange(rows.size))  # each piece's first run
    pieces = np.bincount(rows[roots] // h, minlength=n)
    if pieces.max() <= 1:  # one piece in each image: nothing to judge
        return mask.copy()
    multi = pieces > 1
    if not multi.all():  # judge only the images with several pieces
        out = mask.copy()
        out[multi] = remove_specks(mask[multi], min_fraction)
        return out
    table = _table(mask, rows, starts, ends, label, roots)
    image, size = table.image, table.size
    top, bottom, left, right = table.sides.T  # pixels on each side of the image
    height, width = table.bottom - table.top, table.right - table.left
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
    return table.keep(candidate & (size >= min_fraction * largest[image]))


def digits_side_by_side(mask: np.ndarray) -> np.ndarray:
    """How many digit-sized pieces stand side by side in each cleaned mask.

    A piece is digit-sized when it is at least :data:`SIDE_BY_SIDE_HEIGHT` of the tallest
    piece's height and :data:`SIDE_BY_SIDE_SIZE` of the largest piece's ink. Pieces that
    share columns (a 5's flag) count once, and pieces that together are narrower than
    :data:`SIDE_BY_SIDE_WIDTH` of the tallest's height are one digit (a 4 drawn in two
    strokes). A single digit gives 1, a number its digits that do not touch (wide
    single digits, as MNIST has many, are too like touching pairs to tell); 0 for a
    blank mask.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(n, h, w)``, cleaned (:func:`remove_specks`).

    Returns
    -------
    numpy.ndarray
        int ``(n,)``.
    """
    out = (mask.any(axis=(1, 2))).astype(np.intp)
    # Pieces sharing columns count once, so only ink with an empty column between ink can
    # hold two: the others (nearly every single digit) need no piece table.
    cols = mask.any(axis=1)
    runs = cols[:, 0].astype(np.intp) + (cols[:, 1:] & ~cols[:, :-1]).sum(axis=1)
    apart = np.flatnonzero(runs >= 2)
    if apart.size:
        out[apart] = _count_side_by_side(mask[apart])
    return out


def _count_side_by_side(mask: np.ndarray) -> np.ndarray:
    """:func:`digits_side_by_side` for masks that each hold some ink."""
    n = mask.shape[0]
    out = np.ones(n, dtype=np.intp)
    table = piece_table(mask)
    heights = table.bottom - table.top
    tallest = np.zeros(n, dtype=np.intp)
    largest = np.zeros(n, dtype=np.intp)
    np.maximum.at(tallest, table.image, heights)
    np.maximum.at(largest, table.image, table.size)
    big = (heights >= SIDE_BY_SIDE_HEIGHT * tallest[table.image]) & (
        table.size >= SIDE_BY_SIDE_SIZE * largest[table.image]
    )
    for image in np.unique(table.image[big]).tolist():
        chosen = np.flatnonzero(big & (table.image == image))
        spans = sorted(zip(table.left[chosen].tolist(), table.right[chosen].tolist(), strict=True))
        count, (left, right) = 1, spans[0]
        for a, b in spans[1:]:
            if a < right:  # columns in common: one digit
                left, right = min(left, a), max(right, b)
            else:
                count, left, right = count + 1, a, b
        if spans[-1][1] - spans[0][0] < SIDE_BY_SIDE_WIDTH * tallest[image]:
            count = 1
        out[image] = count
    return out


def ink_boxes(stack: np.ndarray) -> tuple[np.ndarray, ...]:
    """The box ``(top, bottom, left, right)`` (end-exclusive) of each mask's on-pixels.

    Parameters
    ----------
    stack : numpy.ndarray
        bool ``(n, h, w)``; every mask must hold ink.

    Returns
    -------
    tuple of numpy.ndarray
        Four int ``(n,)`` arrays.
    """
    rows, cols = stack.any(axis=2), stack.any(axis=1)
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    bottom = stack.shape[1] - rows[:, ::-1].argmax(axis=1)
    right = stack.shape[2] - cols[:, ::-1].argmax(axis=1)
    return top, bottom, left, right
