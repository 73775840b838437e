"""Segment: a line of handwriting -> its digits, each read by the classifier.

The steps, for one grey image holding one line of digits (an amount, a code):

1. **Ink** as for single digits (:mod:`digitcli.conversion.ink`): polarity, ground removal,
   Otsu's level; the mask is every pixel above it. On hatched security paper, whose fine
   lines pass that level beside faint writing, only ink near the writing's darkest stays
   (:func:`untextured`); the side of a box along the image's left or right side goes
   (:func:`remove_frame`).
2. **Slant**: the line is sheared so that its strokes stand upright (the shear whose
   column profile is the most peaked), so that cuts between digits run down the columns.
3. **Pieces** (:func:`~digitcli.conversion.pieces.piece_table`): dust, guide lines and
   bands along the border (long, flat and without loops: a chain of 0s has loops) drop
   out; the line's digit height is the height of its tall pieces.
4. **Marks**: pieces much shorter than a digit are joined to the digit they stand over (a
   5's flag, a 7's bar) or, when they stand alone, are separators (``.`` ``,`` ``'``) or
   dashes, which are no digits; a short piece holding a loop is a small digit (a 0).
   Tall pieces over one another are joined (a broken 4).
5. **Cuts**: a group of ink as wide as several digits is cut. Candidate cuts are seams,
   paths down the group through the least ink (:func:`_seams`); dynamic programming chooses
   the cuts whose pieces the classifier reads best, with a prior on a digit's width and
   the distance to the digits the model knows, so that slivers and merged pairs score
   badly (:func:`choose`).
6. Each piece as wide as a digit may be (and, when reading, on some way to cut its whole
   group) goes through NIST's steps (:func:`~digitcli.conversion.nist.nist_steps`), as
   cut and with the pen a pixel thinner and thicker (:data:`PEN_VARIANTS`), without the
   model (:func:`layout`: workers do this); the model then reads the candidates of many
   lines in one forward pass, its beliefs averaged over each piece's variants
   (:func:`read_layouts`).

Only one line of digits is read. Several lines are not supported: digits standing above
one another are taken for one digit (a broken one), so each line must be cropped first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from digitcli.conversion.ink import ink_levels, ink_strength, otsu_level
from digitcli.conversion.nist import block_counts, nist_steps
from digitcli.conversion.pieces import PieceTable, piece_table, runs
from digitcli.errors import ModelError

#: A line's mask is textured paper when more than this share of its ink is in strokes
#: under 2 pixels thick (:func:`untextured`). On the dev cheques: 0.002-0.06 for most,
#: up to 0.44 on hatched security paper.
TEXTURE_THIN = 0.15
#: On textured paper, ink is kept up to this many pixels from the writing's darkest ink.
TEXTURE_REACH = 3
#: Shears tried for the line's slant (columns moved per row, relative to the height).
SLANTS = np.linspace(-0.6, 0.6, 13)
#: A line whose tall pieces are lower than this many pixels holds no digit (specks).
MIN_DIGIT_HEIGHT = 6
#: Pieces smaller than this fraction of the line's largest piece are dust.
DUST_FRACTION = 0.03
#: A piece shorter than this fraction of the digit height is a mark (a dot, a dash, a bar).
MARK_HEIGHT = 0.5
#: Beside a single piece far higher than the others, pieces at least this share of its
#: height also set the digit height (:func:`_groups`: a flourished first digit).
TALL_SHARE = 0.25
#: The ground under a line is estimated on a copy at most this many pixels on its longest side.
LINE_WORK = 128
#: Ink in horizontal runs this long (a fraction of the image's width), and longer than
#: LINE_HEIGHTS times the image's height, is a guide line ...
LINE_LENGTH = 0.3
LINE_HEIGHTS = 1.0
#: ... except where the ink runs on vertically beyond this many times the line's thickness.
LINE_CROSSING = 1.5
#: A mark smaller than this fraction of the digit height each way is a dot.
DOT_SIZE = 0.3
#: A loop of ground inside a piece (a hole) at least this fraction of the piece's height
#: across (its area at least the square of that) is a written loop, as of a 0: a long flat
#: piece holding one is a chain of 0s, not a guide line, and a mark holding one (no dot)
#: is a small digit (the 0s of "40.000" written small), not a separator or a dash.
HOLE_SIZE = 0.2
#: A group wider than this many of the line's digit widths may hold several digits.
SPLIT_WIDTH = 1.0
#: Groups narrower than this share of the height are 1s: not counted in the digit width.
ONE_WIDTH = 0.3
#: Groups wider than this share of the height are taken to hold several digits (touching):
#: not counted in the digit width either, else a line of touching pairs gets a digit width
#: as wide as a pair, and its pairs are read whole (as 8s, 0s).
PAIR_WIDTH = 1.0
#: The line's digit width lies in this range of its digit height.
DIGIT_WIDTH_LOW = 0.35
DIGIT_WIDTH_HIGH = 1.1
#: A group at least this many digit heights high is one large digit (a flourished first
#: digit): its widths are judged against the line's digit width scaled by its own height.
LARGE_DIGIT = 1.5
#: Widths (in digit heights) that one digit's cut may take.
MIN_DIGIT_WIDTH = 0.12
MAX_DIGIT_WIDTH = 1.2
#: The width of a digit, in digit heights, when the line does not tell (most digits touch),
#: and the spread of the log prior on a piece's width over the line's digit width.
TYPICAL_WIDTH = 0.75
WIDTH_SPREAD = 0.45
#: A side of the box round a number is looked for this share of the height from the
#: image's left and right sides (:func:`remove_frame`).
FRAME_SIDE = 0.06
#: Two neighbouring groups no wider together than this share of the digit height are
#: also read as one digit (:func:`_joins`): a 4 whose strokes do not meet.
JOIN_WIDTH = 0.9
#: ... and one of them is at most this share of the digit height high (two 1s side by side
#: are not joined).
JOIN_HEIGHT = 0.8
#: A straight cut is also tried where a group's top or bottom edge dips this share of the
#: digit height between two digits (:func:`_valley_cuts`).
VALLEY_DEPTH = 0.1
#: What a seam pays for each column it moves aside (a pixel of ink costs 1).
SEAM_STEP = 1.5
#: At most this many candidate cuts inside one group.
MAX_CUTS = 3
#: The score of a tail (:func:`_flat_pieces`): a flat piece cut off the right end of a
#: group (a dash, an underline or a flourish running on from its last digit), which the
#: line's best reading may pass over (no digit) rather than read it with that digit. Less
#: than 0, so that it is only passed over when that digit reads better without it. On the
#: dev cheques (right ends only, scores 0 / -1 / -2): exact 166 / 169 / 168 of 300, edits
#: 228 / 222 / 223 (234 without); tails at both ends broke 7s' bars on synthetic numbers.
TAIL_SCORE = -1.0
#: Separator characters kept with ``keep_separators``.
SEPARATORS = ".,'"
#: Candidate pieces are read three times: as cut, with the pen one pixel thinner and one
#: pixel thicker (:func:`_pen_variants`: the PEN_VARIANTS masks besides the piece's), and
#: the model's probabilities and strangeness are averaged. On a small image a piece's mask
#: is only known to about a pixel (the ink threshold, blur, JPEG), and a pixel more or less
#: of a low-resolution stroke changes its 8x8 counts much (a loop closes or opens); the
#: average reads what the three agree on. On the dev cheques (exact / character error
#: rate): the piece as cut alone 0.530 / 0.175, with both variants 0.573 / 0.161.
#: Further variants beside these did not add to that: the pen two pixels thinner and
#: thicker 0.570 / 0.164, 8-neighbour growth 0.550 / 0.173, the 32x32 bitmap shifted a
#: column either way 0.563 / 0.165, or eroded or dilated after the stroke-width step
#: 0.560 / 0.170.
PEN_VARIANTS = 2
#: A piece is thinned only if that leaves at least this share of its ink: eroding a thin
#: pen's strokes takes their core, not only their edges (synthetic numbers, with pens down
#: to 1.5 pixels, read 0.804 exact without this rule, 0.812 with it; cheques as before).
MIN_THINNED = 0.3
#: A piece whose cut crosses a loop of ground at least LOOP_SIZE of the digit height across
#: (its area at least the square of that: the inside of a 0, an 8's or a 6's loop) cuts a
#: digit apart, though the two halves may read well (a 0 cut through its middle: a 2 and a
#: piece of the next 0): it pays LOOP_CUT_COST. Small loops are left out: touching 0s
#: enclose ground between them, where the cut between them must run. Dev cheques: exact 168
#: -> 171 of 300, edits 225 -> 220; synthetic seeds 0 / 1 / 2: 431 / 444 / 416 -> 432 / 443 /
#: 417 (the cost of 0.3 / 0.5 / 1.0 width-prior units with loops of 0.2-0.5 digit heights:
#: cheques 169-172, 219-235 edits; synthetic seed 1 436-443).
LOOP_SIZE = 0.4
LOOP_CUT_COST = 0.24
#: A piece whose ink is lower than SHORT_HEIGHT of the digit height (a mark is lower than
#: MARK_HEIGHT) is seldom a whole digit: a flourish's end, part of a digit cut apart. It
#: pays SHORT_COST. Tuned on the cheques and synthetic seed 1 (heights 0.6-0.8, costs
#: 0.3-3): cheques 171 -> 172 exact (220 -> 217 edits), synthetic seed 1 443 -> 444,
#: seed 0 432 -> 433, seed 2 417 -> 419 (costs of 3 and more drop the small 0s of
#: "40.000": cheques 160-165).
SHORT_HEIGHT = 0.65
SHORT_COST = 1.0
#: A cut piece that is one straight stroke down the line (:func:`_straight`) and reads as a
#: 1 is a 1, however narrow: its width's log prior is at least STRAIGHT_ONE_PRIOR (a 1 is
#: much narrower than the line's other digits, and the prior alone made a 1 touching its
#: neighbour part of it: "10" read as 0). Its ink spans STRAIGHT_HEIGHT of the digit
#: height, is at most STRAIGHT_WIDTH of it wide in any row, and bends at most
#: STRAIGHT_BEND of it. Synthetic numbers (benchmarks/strings.py, seeds 0 / 1 / 2): exact
#: 422 / 433 / 411 of 500 without, 426 / 435 / 413 with; the dev cheques as before.
STRAIGHT_HEIGHT = 0.85
STRAIGHT_WIDTH = 0.12
STRAIGHT_BEND = 0.03
STRAIGHT_ONE_PRIOR = -1.5
#: Cut pieces whose width's log prior (:func:`_width_prior`) is below this are not read
#: (never chosen on the dev cheques, whose chosen cut pieces are all above -2.4): a sliver,
#: or a piece as wide as several digits. A whole group is always read, and so is a straight
#: stroke (:data:`STRAIGHT_ONE_PRIOR`).
MIN_WIDTH_PRIOR = -4.0
#: Only pieces whose width's log prior is at least this are read in the pen variants (the
#: others as cut in all three): the variants are for pieces that may be chosen.
VARY_WIDTH_PRIOR = -2.0


@dataclass(frozen=True)
class Glyph:
    """One character read from a line: a digit, or a separator kept on request.

    ``box`` is ``(top, bottom, left, right)`` in the image's pixels, end-exclusive.
    """

    text: str
    probability: float
    box: tuple[int, int, int, int]
    #: The Digits features the model read (uint8 ``(64,)``) and its probabilities
    #: ``(10,)``; None for a separator.
    features: np.ndarray | None = field(default=None, compare=False, repr=False)
    probabilities: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Reading:
    """What was read from one image: the glyphs in reading order and their joint probability."""

    glyphs: tuple[Glyph, ...]

    @property
    def number(self) -> str:
        """The characters read, in order (digits, and the separators that were kept)."""
        return "".join(g.text for g in self.glyphs)

    @property
    def digits(self) -> int:
        """How many digits were read."""
        return sum(g.text.isdigit() for g in self.glyphs)

    @property
    def confidence(self) -> float:
        """The probability that every digit is right: the product of theirs."""
        return math.prod(g.probability for g in self.glyphs if g.text.isdigit())


@dataclass
class _Group:
    """Pieces read as one unit: their piece indices and their common box."""

    pieces: list[int]
    top: int
    bottom: int
    left: int
    right: int

    def absorb(self, other: _Group) -> None:
        self.pieces += other.pieces
        self.top, self.bottom = min(self.top, other.top), max(self.bottom, other.bottom)
        self.left, self.right = min(self.left, other.left), max(self.right, other.right)

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _shear(a: np.ndarray, slant: float) -> tuple[np.ndarray, np.ndarray]:
    """Shift each row of ``(h, w)`` right by ``slant * (h - 1 - y)`` columns (rounded).

    Returns the sheared array (wider by the largest shift) and each row's shift.
    """
    h, w = a.shape
    shifts = np.round(slant * (h - 1 - np.arange(h))).astype(np.intp)
    shifts -= shifts.min()
    out = np.zeros((h, w + int(shifts.max())), dtype=a.dtype)
    cols = np.arange(w)[None, :] + shifts[:, None]
    out[np.arange(h)[:, None], cols] = a
    return out, shifts


def upright(mask: np.ndarray) -> float:
    """The shear (columns per row) that stands the strokes of a line's mask upright.

    The shear whose column profile is the most peaked (the largest sum of squared column
    counts) puts the most ink in the fewest columns: upright strokes.
    """
    ys, xs = np.nonzero(mask)
    if not ys.size:
        return 0.0
    h = mask.shape[0]
    best, best_score = 0.0, -1.0
    for slant in SLANTS.tolist():
        # Whole rows move, as in _shear: rounding each pixel's place instead would round
        # the half-columns of shears like 0.5 to even columns, merging neighbours into
        # falsely peaked columns.
        cols = xs + np.round(slant * (h - 1 - ys)).astype(np.intp)
        counts = np.bincount(cols - cols.min())
        score = float(np.dot(counts, counts))
        if score > best_score * 1.0001:  # ties keep the smaller shear (upright first)
            best, best_score = slant, score
    return best


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each pixel of a 2-D mask, the length of the horizontal run of ink holding it."""
    h, w = mask.shape
    rows, starts, ends = runs(mask[None])
    length = ends - starts + 1
    marks = np.zeros((h, w + 1), dtype=np.intp)  # +length where a run starts, - past its end
    np.add.at(marks, (rows, starts), length)
    np.subtract.at(marks, (rows, ends + 1), length)
    return np.cumsum(marks, axis=1)[:, :w]


def remove_lines(mask: np.ndarray) -> np.ndarray:
    """Remove horizontal guide lines and underlines from a line's mask, not the digits on them.

    A line is ink in horizontal runs at least :data:`LINE_LENGTH` of the image's width (and
    longer than the image is high): no digit of a number holds such a run. Its pixels go,
    except where a stroke crosses it: there the ink runs on above or below the line, and
    the vertical run through the pixel is longer than the line is thick.
    """
    h, w = mask.shape
    line = _run_lengths(mask) >= max(LINE_LENGTH * w, LINE_HEIGHTS * h)
    if not line.any():
        return mask
    down = _run_lengths(mask.T).T  # vertical runs
    thickness = float(np.median(down[line]))
    crossing = down > LINE_CROSSING * thickness + 1
    return mask & ~(line & ~crossing)


def _line_masks(gray: np.ndarray, invert: bool | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Ink above the ground ``(h, w)``, the ink mask (without guide lines) and its threshold."""
    ink = ink_strength(gray[None], invert)
    flat, thresholds, blank = ink_levels(ink, work=min(max(gray.shape), LINE_WORK))
    if blank[0]:
        return flat[0], np.zeros(gray.shape, dtype=bool), 1.0
    mask = untextured(flat[0], flat[0] > thresholds[0])
    return flat[0], remove_lines(remove_frame(mask)), float(thresholds[0])


def remove_frame(mask: np.ndarray) -> np.ndarray:
    """Remove the sides of the box a number was written in from a line's mask.

    A crop of a form often keeps a side of its box: a vertical line from the top of the
    image to its bottom, along its left or right side (within :data:`FRAME_SIDE` of the
    height), which would read as a 1. Its pixels are those in vertical runs of ink at
    least the image's height less one pixel. A digit's stroke as straight and as long,
    there (a 1 cropped at its ends), is taken for the frame too: none of the dev cheques
    has one, and two have a frame.
    """
    h, w = mask.shape
    side = math.ceil(FRAME_SIDE * h)
    if w <= 2 * side:
        return mask
    down = _run_lengths(mask.T).T  # vertical runs
    frame = down >= h - 1
    frame[:, side : w - side] = False
    return mask & ~frame if frame.any() else mask


def _thin(mask: np.ndarray) -> np.ndarray:
    """The ink of a 2-D mask in strokes under 2 pixels thick: what a 2x2 opening removes."""
    core = mask.copy()
    core[1:] &= mask[:-1]
    core[:, 1:] &= mask[:, :-1]
    core[1:, 1:] &= mask[:-1, :-1]
    opened = core.copy()
    opened[:-1] |= core[1:]
    opened[:, :-1] |= core[:, 1:]
    opened[:-1, :-1] |= core[1:, 1:]
    return mask & ~opened


def untextured(flat: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A line's mask without the printed texture of its paper (a cheque's hatching).

    Security paper is printed with fine lines that, beside faint writing, pass Otsu's
    level: the mask is then a mesh of thin lines round the digits, joining them. Such a
    mask is told by its share of ink in strokes under 2 pixels thick (over
    :data:`TEXTURE_THIN`; pen strokes are thicker). The texture is fainter than the
    writing: the ink of the writing is what passes Otsu's level of the mask's own values,
    and only ink within :data:`TEXTURE_REACH` pixels of it (the softer edges and faint
    stretches of the same strokes) is kept.

    Parameters
    ----------
    flat : numpy.ndarray
        Ink above the ground ``(h, w)``, 0..1.
    mask : numpy.ndarray
        Bool ``(h, w)``: the ink above the line's threshold.

    Returns
    -------
    numpy.ndarray
        `mask`, itself when it holds no texture.
    """
    inked = int(mask.sum())
    if not inked or _thin(mask).sum() <= TEXTURE_THIN * inked:
        return mask
    near = flat > otsu_level(flat[mask])
    for _ in range(TEXTURE_REACH):
        near = _grown(near)
    return mask & near


def _grown(mask: np.ndarray) -> np.ndarray:
    """A mask (or a stack of them) grown by one pixel to its 4 neighbours."""
    grown = mask.copy()
    grown[..., 1:, :] |= mask[..., :-1, :]
    grown[..., :-1, :] |= mask[..., 1:, :]
    grown[..., 1:] |= mask[..., :-1]
    grown[..., :-1] |= mask[..., 1:]
    return grown


def _groups(mask: np.ndarray) -> tuple[list[_Group], list[_Group], np.ndarray, float]:
    """The digit groups and the marks of a (sheared) line mask, its labels and digit height."""
    table = piece_table(mask[None])
    labels = table.labels()[0]
    if not len(table):
        return [], [], labels, 0.0
    h, w = mask.shape
    height = table.bottom - table.top
    width = table.right - table.left
    keep = table.size >= DUST_FRACTION * table.size.max()
    # Guide lines and bands along the border: long and flat, and without loops (a chain
    # of 0s written together is long and flat too).
    flat = keep & (width >= 4 * np.maximum(height, 1)) & (width >= LINE_LENGTH * w)
    for i in np.flatnonzero(flat).tolist():
        keep[i] = _has_loop(table, labels, i)
    sizes = np.sort(table.size[keep])
    if not sizes.size:
        return [], [], labels, 0.0
    # The digit height: the median height of the large pieces (a fifth of the largest)
    # at least half as high as the highest.
    tall = keep & (table.size >= 0.2 * sizes[-1])
    high = tall & (height >= 0.5 * height[tall].max())
    if high.sum() == 1 and len(sizes) > 2:
        # One piece far higher than the rest: a flourished first digit beside smaller
        # ones, or a lone digit (or touching chain) beside marks. The pieces a fifth the
        # size of the second largest and at least TALL_SHARE of its height count when
        # there are at least two of them besides it (a comma beside a lone digit is one).
        tall = keep & (table.size >= 0.2 * sizes[-2])
        rest = tall & ~high & (height >= TALL_SHARE * height[high].max())
        if rest.sum() >= 2:
            high |= rest
    digit_height = float(np.median(height[high]))
    if digit_height < MIN_DIGIT_HEIGHT:  # specks, a hairline: no digit
        return [], [], labels, 0.0
    base = float(np.median(table.bottom[tall & (height >= MARK_HEIGHT * digit_height)]))
    groups, marks = [], []
    for i in np.flatnonzero(keep).tolist():
        g = _Group(
            [i], int(table.top[i]), int(table.bottom[i]), int(table.left[i]), int(table.right[i])
        )
        small = height[i] < MARK_HEIGHT * digit_height
        dot = max(height[i], width[i]) < DOT_SIZE * digit_height
        digit = not small or (not dot and _has_loop(table, labels, i))
        (groups if digit else marks).append(g)
    groups.sort(key=lambda g: g.left)
    # Tall pieces over one another are one digit.
    merged: list[_Group] = []
    for g in groups:
        if merged and _overlap(merged[-1], g) >= 0.5 * min(merged[-1].width, g.width):
            merged[-1].absorb(g)
        else:
            merged.append(g)
    groups = merged
    # Marks over a digit (their middle within its columns) are part of it (a 5's flag, a
    # 2's foot), unless they are dots on the base line (a decimal point).
    loose = []
    for m in marks:
        dot = max(m.width, m.height) < DOT_SIZE * digit_height
        low = m.top >= base - 0.35 * digit_height
        owner = max(groups, key=lambda g: _overlap(g, m), default=None)
        centre = (m.left + m.right) / 2
        over = owner is not None and owner.left <= centre < owner.right
        if over and not (dot and low) and _overlap(owner, m) >= 0.5 * m.width:
            owner.absorb(m)
        else:
            loose.append(m)
    return groups, loose, labels, digit_height


def _has_loop(table: PieceTable, labels: np.ndarray, i: int) -> bool:
    """Whether piece `i` of a line encloses a loop of ground (see :data:`HOLE_SIZE`)."""
    top, bottom = int(table.top[i]), int(table.bottom[i])
    left, right = int(table.left[i]), int(table.right[i])
    return _encloses(labels[top:bottom, left:right] != i)


def _mask_loop(mask: np.ndarray) -> bool:
    """Whether the ink of `mask` encloses a loop of ground (see :data:`HOLE_SIZE`)."""
    if not (_two_runs(mask, 0) and _two_runs(mask, 1)):
        return False
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return _encloses(~mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def _encloses(ground: np.ndarray) -> bool:
    """Whether the `ground` of an ink's box has a hole of :data:`HOLE_SIZE` of its height."""
    return bool(_holes(ground, HOLE_SIZE * ground.shape[0])[1].any())


def _holes(ground: np.ndarray, side: float) -> tuple[PieceTable, np.ndarray]:
    """The pieces of `ground` (bool ``(h, w)``), and which are holes at least `side` across.

    A hole touches none of the mask's sides (ink encloses it) and its area is at least
    ``side ** 2``.
    """
    pieces = piece_table(ground[None])
    return pieces, (pieces.sides.sum(axis=1) == 0) & (pieces.size >= side**2)


def _two_runs(mask: np.ndarray, axis: int) -> bool:
    """Whether some line of `mask` along `axis` crosses ink twice (a loop needs it both ways)."""
    m = mask if axis == 1 else mask.T
    starts = m[:, 1:] & ~m[:, :-1]
    return bool((starts.sum(axis=1) + m[:, 0] >= 2).any())


def _flat_pieces(
    stack: np.ndarray, among: np.ndarray, units: list[_Group], digit_height: float
) -> np.ndarray:
    """Which pieces of a stack are flat: no digit, whatever they read as.

    A piece cut out of a unit at least :data:`MARK_HEIGHT` of the digit height high, whose
    ink is lower than that and holds no loop (:data:`HOLE_SIZE`: a small 0 does), is a
    mark: the end of a dash or an underline touching a digit, or a flourish. Only the
    pieces `among` (bool, one per piece) are looked at, the others are not flat; `units`
    are the pieces' units, in the order of `stack`.
    """
    low = MARK_HEIGHT * digit_height
    out = among & np.array([u.height >= low for u in units], dtype=bool)
    index = np.flatnonzero(out)
    rows_on = stack[index].any(axis=2)
    heights = rows_on.shape[1] - rows_on[:, ::-1].argmax(axis=1) - rows_on.argmax(axis=1)
    out[index] = rows_on.any(axis=1) & (heights < low)
    for j in np.flatnonzero(out).tolist():
        out[j] = not _mask_loop(stack[j])
    return out


def _straight(stack: np.ndarray, among: np.ndarray, digit_height: float) -> np.ndarray:
    """Which pieces of a stack are one straight stroke down the line: 1s.

    Ink in at least :data:`STRAIGHT_HEIGHT` of the digit height's rows, at most
    :data:`STRAIGHT_WIDTH` of it (in pixels of ink) in any row, and each row's middle within
    :data:`STRAIGHT_BEND` of it from the straight line fitted through them (least squares).
    A sliver cut off a round digit bends; a 1 with a flag or a foot is wider at its ends.
    Only the pieces `among` (bool, one per piece) are looked at, the others are not straight.
    """
    out = np.zeros(len(stack), dtype=bool)
    index = np.flatnonzero(among)
    pieces = stack[index]
    counts = pieces.sum(axis=2)
    rows_on = counts > 0
    tall = rows_on.sum(axis=1) >= STRAIGHT_HEIGHT * digit_height
    thin = counts.max(axis=1, initial=0) <= STRAIGHT_WIDTH * digit_height
    keep = tall & thin
    index, pieces, counts, on = index[keep], pieces[keep], counts[keep], rows_on[keep]
    if not len(index):
        return out
    middles = (pieces @ np.arange(pieces.shape[2], dtype=np.float64)) / np.maximum(counts, 1)
    y = np.arange(pieces.shape[1], dtype=np.float64)
    w = on.astype(np.float64)
    n, sy, syy = w.sum(axis=1), w @ y, w @ (y * y)
    sm, sym = (w * middles).sum(axis=1), (w * middles) @ y
    slope = (n * sym - sy * sm) / (n * syy - sy * sy)
    intercept = (sm - slope * sy) / n
    bend = np.where(on, np.abs(middles - intercept[:, None] - slope[:, None] * y), 0.0)
    out[index] = bend.max(axis=1) <= STRAIGHT_BEND * digit_height
    return out


def _loops(mask: np.ndarray, digit_height: float) -> np.ndarray:
    """The ground the ink of `mask` encloses in loops :data:`LOOP_SIZE` of the digit height across.

    :func:`layout` asks once per line, of all its groups' ink.
    """
    ground, big = _holes(~mask, LOOP_SIZE * digit_height)
    if not big.any():
        return np.zeros(mask.shape, dtype=bool)
    labels = ground.labels()[0]
    return (labels >= 0) & big[np.maximum(labels, 0)]


def _overlap(a: _Group, b: _Group) -> int:
    return max(0, min(a.right, b.right) - max(a.left, b.left))


def _seams(gmask: np.ndarray, digit_height: float, most: int) -> list[np.ndarray]:
    """Where a group of ink may be cut: paths from top to bottom through the least ink.

    A seam runs down the group one row at a time, moving at most one column a row; each
    pixel of ink it crosses costs 1 and each step aside :data:`SEAM_STEP`. So it goes
    round a digit that only overlaps its neighbour, and through the thin join of two
    digits that touch. The seams ending at the bottom columns whose cost is lowest
    (a local minimum, at least the smallest digit width from the group's sides and from
    each other; at most `most`) are candidates.

    Returns
    -------
    list of numpy.ndarray
        Each cut's ``path``: ``path[y]`` is the first column (in the group) right of the
        cut on row ``y``.
    """
    h, w = gmask.shape
    ink = gmask.astype(np.float64)
    costs = np.empty((h, w))  # of the cheapest seam down to each pixel
    costs[0] = ink[0]
    side = np.full(w + 2, np.inf)  # the costs one column aside: side[x] left, side[x + 2] right
    aside = np.empty(w)
    for y in range(1, h):
        np.add(costs[y - 1], SEAM_STEP, out=side[1:-1])
        np.minimum(side[:-2], side[2:], out=aside)
        np.minimum(costs[y - 1], aside, out=costs[y])
        costs[y] += ink[y]
    cost = costs[-1]
    # Where each row's cheapest seam comes from: its column above (stays), or else the
    # column above on its right (from_right) or on its left; as in the loop, for all rows.
    sides = np.full((h - 1, w + 2), np.inf)
    np.add(costs[:-1], SEAM_STEP, out=sides[:, 1:-1])
    left, right = sides[:, :-2], sides[:, 2:]
    stays = np.ones((h, w), dtype=bool)
    from_right = np.zeros((h, w), dtype=bool)
    np.less_equal(costs[:-1], np.minimum(left, right), out=stays[1:])
    np.less(right, left, out=from_right[1:])
    lo = max(1, int(MIN_DIGIT_WIDTH * digit_height))
    order = np.lexsort((np.abs(np.arange(w) - w / 2), cost))  # cheapest, then central
    valley = np.ones(w, dtype=bool)  # no cheaper neighbour
    valley[1:] &= cost[1:] <= cost[:-1]
    valley[:-1] &= cost[:-1] <= cost[1:]
    order = order[valley[order] & (order >= lo) & (order <= w - lo)]
    chosen: list[int] = []
    for x in order.tolist():
        if len(chosen) >= most:
            break
        if all(abs(x - c) >= lo for c in chosen):
            chosen.append(x)
    # Each pixel's step to the row above, plus one (0: left, 1: up, 2: right), as bytes:
    # the paths are followed up one pixel at a time.
    steps = np.where(stays, 1, np.where(from_right, 2, 0)).astype(np.uint8).tobytes()
    out = []
    for x in chosen:
        path = [x]
        for y in range(h - 1, 0, -1):
            x += steps[y * w + x] - 1
            path.append(x)
        out.append(np.array(path[::-1], dtype=np.intp))
    return out


def _valley_cuts(gmask: np.ndarray, digit_height: float, taken: list[float]) -> list[np.ndarray]:
    """Straight cuts down a group where its outline dips between two digits.

    Where two round digits touch (a chain of 0s), the least-ink seams of :func:`_seams`
    run through the middle of a digit (its top and bottom strokes are less ink than the
    join), but the outline tells the join: the top edge dips and the bottom edge rises
    between the two. A column is a candidate where the top (or the bottom) edge lies at
    least :data:`VALLEY_DEPTH` of the digit height deeper into the ink than its highest
    (lowest) point on either side within half a digit height, and is deepest among its
    neighbours; columns next to a cut in `taken` (their mean columns) are left out.

    Returns
    -------
    list of numpy.ndarray
        Each cut's path, as from :func:`_seams`: the same column on every row.
    """
    h, w = gmask.shape
    cols = gmask.any(axis=0)
    top = np.where(cols, gmask.argmax(axis=0), h).astype(np.float64)
    bottom = np.where(cols, h - 1 - gmask[::-1].argmax(axis=0), -1).astype(np.float64)
    reach = max(2, int(0.5 * digit_height))
    edge = max(1, int(MIN_DIGIT_WIDTH * digit_height))
    taken = list(taken)
    out = []
    for inward in (top, -bottom):  # larger: further into the ink from above / from below
        inward = np.where(cols, inward, np.inf)
        windows = sliding_window_view(np.pad(inward, reach, constant_values=np.inf), reach)
        left = windows[:w].min(axis=1)  # the highest edge in the `reach` columns left of x
        right = windows[reach + 1 : reach + 1 + w].min(axis=1)  # and right of x
        depth = np.where(cols, inward - np.maximum(left, right), -np.inf)
        depth[:edge] = depth[w - edge + 1 :] = -np.inf
        deepest = np.ones(w, dtype=bool)
        deepest[1:] &= depth[1:] >= depth[:-1]
        deepest[:-1] &= depth[:-1] >= depth[1:]
        for x in np.flatnonzero(deepest & (depth >= VALLEY_DEPTH * digit_height)).tolist():
            if all(abs(x - t) > 1 for t in taken):
                out.append(np.full(h, x, dtype=np.intp))
                taken.append(float(x))
    return out


def _width_prior(width: float, digit_width: float) -> float:
    """Log prior of a piece `width` wide in a line whose digits are `digit_width` wide."""
    return -0.5 * (math.log(width / digit_width) / WIDTH_SPREAD) ** 2


def _digit_width(groups: list[_Group], digit_height: float) -> float:
    """The width of this line's digits: the median width of its single-digit groups.

    Groups narrower than :data:`ONE_WIDTH` (1s) or wider than :data:`PAIR_WIDTH` of the
    height (touching digits) are left out; the median of the others is this hand's width.
    With fewer than two of them (most digits touching) it is :data:`TYPICAL_WIDTH` of the
    height.
    """
    widths = [
        g.width for g in groups if ONE_WIDTH * digit_height <= g.width <= PAIR_WIDTH * digit_height
    ]
    if len(widths) < 2:
        return TYPICAL_WIDTH * digit_height
    low, high = (f * digit_height for f in (DIGIT_WIDTH_LOW, DIGIT_WIDTH_HIGH))
    return float(np.clip(np.median(widths), low, high))


class Classifier(Protocol):
    """What reading needs of a model (:class:`digitcli.model.Model` is one)."""

    def predict_proba(self, X: np.ndarray, *, invalid: str = "raise") -> np.ndarray:
        """Probabilities ``(n, 10)``; with ``invalid="nan"``, NaN rows where not finite."""
        ...

    def strangeness(self, X: np.ndarray) -> np.ndarray | None:
        """How far each row lies from the digits the model knows (``None``: not known)."""
        ...


@dataclass(frozen=True)
class Weights:
    """How a candidate piece is scored: the terms of its log score.

    ``log p + width * prior(width) - strange * strangeness - per_digit``: the classifier's
    belief, the prior on a piece's width over the line's digit width, the distance to the
    digits the model knows (:meth:`digitcli.model.Model.strangeness`), and a cost for
    each digit (negative: a bonus, which offsets the sum of log terms that would always
    prefer fewer pieces). Tuned on the dev cheques and on synthetic numbers
    (``benchmarks/make_strings.py --seed 1``, 500) together, the weights only, never
    trained on them; checked on the synthetic seeds 0 and 2. A grid of width 0.8-1.2,
    strange 0.3-0.6 and per_digit -1.25 to -1.75 with the shipped model of 84a550b: the
    weights before (1.0, 0.5, -1.5) read 167 cheques exactly (227 edits) and 428 / 436 /
    414 synthetic numbers (seeds 0 / 1 / 2); these read 168 (225) and 431 / 444 / 416, and
    their neighbours in the grid about as well.
    """

    width: float = 0.8
    strange: float = 0.4
    per_digit: float = -1.5


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True)
class Layout:
    """A line's candidate pieces: every way its groups may be cut, each piece converted.

    Made without the model (:func:`layout`), so that workers can make it and the model
    reads every candidate of many lines at once (:func:`choose`). ``cuts[g]`` is how many
    cuts group ``g`` has, its two sides included (cut 0 is its left side); ``spans[k]`` is
    ``(group, first cut, last cut)``, indices of its cuts. ``features`` (uint8, Digits
    format), ``widths`` (of the piece's ink) and ``boxes`` (image pixels, ``top, bottom,
    left, right``) are per span; ``features`` has a row only for the spans read
    (``found``: they hold ink, and are a whole group, as wide as a digit may be (see
    :data:`MIN_WIDTH_PRIOR`) or a straight stroke; tails only with ``every_span``).
    ``variants`` ``(PEN_VARIANTS, rows, 64)`` are the same pieces' features with the pen
    thinner and thicker (:data:`PEN_VARIANTS`).
    ``unit_scales[u]`` is how much larger than the line's digits unit ``u`` is
    (:data:`LARGE_DIGIT`; 1 for most): its pieces' widths are judged by
    :meth:`unit_width`. ``tails`` marks the spans that are flat pieces at a group's right
    end (:func:`_flat_pieces`, :data:`TAIL_SCORE`): no digit if chosen, whatever they
    read as (so they are not read, but with ``every_span``: training takes every piece
    as laid out). ``straight`` marks the cut pieces narrower than a digit that are one
    straight stroke (:func:`_straight`): read however narrow, and a 1 if the model reads
    one (:data:`STRAIGHT_ONE_PRIOR`). ``split_loop`` marks the spans whose cuts cross a
    loop (:data:`LOOP_CUT_COST`); ``heights`` is each read span's ink height (0 for the
    others), in the layout's pixels as ``digit_height`` (:data:`SHORT_COST`).
    """

    cuts: list[int]
    spans: list[tuple[int, int, int]]
    found: np.ndarray
    features: np.ndarray
    widths: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    separators: list[Glyph]
    digit_height: float
    digit_width: float
    variants: np.ndarray
    tails: np.ndarray
    straight: np.ndarray
    split_loop: np.ndarray
    heights: np.ndarray
    joins: list[int] = field(default_factory=list)
    unit_scales: list[float] = field(default_factory=list)

    def unit_width(self, unit: int) -> float:
        """The digit width a unit's pieces are judged by (:data:`LARGE_DIGIT`)."""
        return self.digit_width * (self.unit_scales[unit] if self.unit_scales else 1.0)

    def scaled(self, fx: float, fy: float) -> Layout:
        """The same layout with its boxes scaled to an image `fx` times as wide, `fy` high."""

        def box(b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
            top, bottom, left, right = b
            return (
                math.floor(top * fy),
                math.ceil(bottom * fy),
                math.floor(left * fx),
                math.ceil(right * fx),
            )

        return dataclasses.replace(
            self,
            boxes=[box(b) for b in self.boxes],
            separators=[dataclasses.replace(g, box=box(g.box)) for g in self.separators],
        )


def _size_scale(g: _Group, digit_height: float) -> float:
    """How much larger than the line's digits a unit is: 1, or its height over theirs."""
    return g.height / digit_height if g.height >= LARGE_DIGIT * digit_height else 1.0


def _joins(groups: list[_Group], digit_height: float) -> list[int]:
    """The neighbouring groups that may be one digit written in two strokes (an open 4).

    Group ``j`` and ``j + 1`` may be joined when, together, they are no wider than
    :data:`JOIN_WIDTH` of the digit height and one of them is at most
    :data:`JOIN_HEIGHT` of it high (a 4's bent stroke beside its upright, a 5's hook
    beside its flag). The model then reads them whole as one more candidate, and the
    line's best reading takes them whole or each as it cuts best (:func:`choose`).
    """
    return [
        j
        for j in range(len(groups) - 1)
        if max(groups[j].right, groups[j + 1].right) - groups[j].left <= JOIN_WIDTH * digit_height
        and min(groups[j].height, groups[j + 1].height) <= JOIN_HEIGHT * digit_height
    ]


def _joined(a: _Group, b: _Group) -> _Group:
    """One group of the pieces of `a` and `b`."""
    out = _Group(list(a.pieces), a.top, a.bottom, a.left, a.right)
    out.absorb(b)
    return out


def layout(
    gray: np.ndarray, *, invert: bool | None = None, every_span: bool = True
) -> Layout | None:
    """Find a line's groups of ink and their candidate cuts, and convert every candidate.

    Parameters
    ----------
    gray : numpy.ndarray
        Grey levels ``(h, w)``, float 0..1 (1 = white), as
        :func:`~digitcli.conversion.decode.scaled` gives.
    invert : bool or None
        Polarity, see :func:`~digitcli.conversion.ink.ink_strength`.
    every_span : bool
        Read every span that holds ink and may be a digit. Without it, only those that
        can be chosen are (:func:`_on_whole_cuts`): the reading is the same, for less
        work. The pieces training takes from synthetic numbers need every span.

    Returns
    -------
    Layout or None
        ``None`` when the image holds no ink.
    """
    flat, mask, threshold = _line_masks(gray, invert)
    if not mask.any():
        return None
    slant = upright(mask)
    smask, shifts = _shear(mask, slant)
    sflat, _ = _shear(flat, slant)
    groups, marks, labels, digit_height = _groups(smask)
    if not groups:
        return None
    # Only the rows of the writing are worked on: the band from its top to its bottom.
    y0 = min(g.top for g in groups + marks)
    y1 = max(g.bottom for g in groups + marks)
    smask, sflat, labels, shifts = smask[y0:y1], sflat[y0:y1], labels[y0:y1], shifts[y0:y1]
    for g in groups + marks:
        g.top, g.bottom = g.top - y0, g.bottom - y0
    digit_width = _digit_width(groups, digit_height)
    h = smask.shape[0]
    joins = _joins(groups, digit_height)
    spans: list[tuple[int, int, int]] = []
    cuts_of: list[list[np.ndarray]] = []
    lows, highs = [], []  # each cut's first and last column, per unit
    through_loop: list[list[bool]] = []  # whether each cut crosses a loop, per unit
    line_loops = None  # the loops of the line's groups, found when first needed
    # Each pixel's group, -1 for none (a group holds only its own pieces).
    group_of = np.full(int(labels.max()) + 1, -1, dtype=np.int32)
    for gi, g in enumerate(groups):
        group_of[g.pieces] = gi
    pixel_groups = np.where(labels >= 0, group_of[labels], -1)
    # The units cut and read: the groups, then the pairs of them that may be one digit.
    units = groups + [_joined(groups[j], groups[j + 1]) for j in joins]
    unit_groups = [(gi, gi) for gi in range(len(groups))] + [(j, j + 1) for j in joins]
    scales = [_size_scale(g, digit_height) for g in units]
    unit_widths = [digit_width * scale for scale in scales]  # as Layout.unit_width
    for gi, g in enumerate(units):
        inner = []
        if gi < len(groups) and g.width > SPLIT_WIDTH * unit_widths[gi]:
            most = MAX_CUTS + 2 * round(g.width / unit_widths[gi])  # a long chain: more cuts
            gmask = pixel_groups[:, g.left : g.right] == gi
            inner = _seams(gmask, digit_height, most)
            inner += _valley_cuts(gmask, digit_height, [float(p.mean()) for p in inner])
        inner.sort(key=lambda p: p.mean())
        through = [False] * (len(inner) + 2)  # cuts through a loop (sides never are)
        if inner:
            if line_loops is None:
                line_loops = _loops(pixel_groups >= 0, digit_height)
            loops = line_loops[:, g.left : g.right]
            rows = np.arange(h)
            through[1:-1] = [bool(loops[rows, np.minimum(p, g.width - 1)].any()) for p in inner]
        through_loop.append(through)
        paths = [np.zeros(h, dtype=np.intp), *inner, np.full(h, g.width, dtype=np.intp)]
        cuts_of.append(paths)
        lows.append([int(path.min()) for path in paths])
        highs.append([int(path.max()) for path in paths])
        for a in range(len(paths)):
            for b in range(a + 1, len(paths)):
                whole = a == 0 and b == len(paths) - 1
                wide = highs[gi][b] - lows[gi][a] > MAX_DIGIT_WIDTH * digit_height * scales[gi]
                if whole or not wide:
                    spans.append((gi, a, b))
    extents = [(lows[gi][a], highs[gi][b]) for gi, a, b in spans]
    last = [len(cuts_of[gi]) - 1 for gi, _, _ in spans]  # a whole group's span: 0 .. last
    n = len(spans)
    found = np.zeros(n, dtype=bool)
    tails = np.zeros(n, dtype=bool)  # see Layout
    straight = np.zeros(n, dtype=bool)
    vary = np.zeros(n, dtype=bool)
    widths = np.zeros(n, dtype=np.intp)
    # Pieces up to a digit's width are cut out as one stack, and whole groups wider than
    # that as another, so the many narrow ones are not padded to the widest group.
    narrow = np.array([hi - lo <= MAX_DIGIT_WIDTH * digit_height for lo, hi in extents])
    stacks = []
    for part in (np.flatnonzero(narrow), np.flatnonzero(~narrow)):
        if not part.size:
            continue
        part_spans = [spans[k] for k in part.tolist()]
        lo, hi = (np.array([extents[k][i] for k in part.tolist()]) for i in (0, 1))
        widest = int((hi - lo).max())
        # Column c of piece j is column at[j] + c of the line. The piece is its group's ink
        # between its two cuts (within); columns past the line are never within.
        at = np.array([units[gi].left for gi, _, _ in part_spans]) + lo
        first = np.stack([cuts_of[gi][a] for gi, a, _ in part_spans]) - lo[:, None]
        end = np.stack([cuts_of[gi][b] for gi, _, b in part_spans]) - lo[:, None]
        cols = np.arange(widest)
        within = (cols >= first[:, :, None]) & (cols < end[:, :, None])
        line_cols = np.minimum(at[:, None] + cols, smask.shape[1] - 1)
        # int32: the index arrays are the largest of the stack (half the memory traffic).
        pixel = (np.arange(h, dtype=np.int32) * smask.shape[1])[None, :, None] + line_cols[
            :, None, :
        ].astype(np.int32)
        # A unit's groups: first .. last (itself, or the two a join reads as one).
        first_group, last_group = (
            np.array([unit_groups[gi][i] for gi, _, _ in part_spans]) for i in (0, 1)
        )
        ink_of = pixel_groups.ravel()[pixel]
        mine = (ink_of >= first_group[:, None, None]) & (ink_of <= last_group[:, None, None])
        stack = within & mine
        stack = _largest_parts(stack)
        cols_on = stack.any(axis=1)
        inked = cols_on.any(axis=1)
        widths[part] = np.where(
            inked, widest - cols_on[:, ::-1].argmax(axis=1) - cols_on.argmax(axis=1), 0
        )
        priors = np.array(
            [
                _width_prior(w, unit_widths[spans[k][0]]) if w else -math.inf
                for k, w in zip(part.tolist(), widths[part].tolist(), strict=True)
            ]
        )
        whole = np.array([spans[k][1:] == (0, last[k]) for k in part.tolist()])
        right_end = np.array([spans[k][2] == last[k] for k in part.tolist()])
        part_units = [units[spans[k][0]] for k in part.tolist()]
        tail = _flat_pieces(stack, inked & ~whole & right_end, part_units, digit_height)
        part_widths = np.array([unit_widths[spans[k][0]] for k in part.tolist()])
        narrower = (priors < STRAIGHT_ONE_PRIOR) & (widths[part] < part_widths)
        st = _straight(stack, inked & ~whole & narrower, digit_height)
        straight[part] = st
        found[part] = inked & (whole | (priors >= MIN_WIDTH_PRIOR) | st)
        tails[part] = tail
        vary[part] = priors >= VARY_WIDTH_PRIOR
        stacks.append((part, stack, within, pixel, at))
    if not every_span:
        on_whole = _on_whole_cuts(spans, found | tails, [len(paths) for paths in cuts_of])
        found &= on_whole & ~tails  # a tail's reading is never used
        tails &= on_whole
    vary &= found & ~tails
    rows = np.zeros((1 + PEN_VARIANTS, n, 32), dtype=np.uint64)
    boxes: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * n
    grey = sflat.ravel()
    for part, stack, within, pixel, offsets in stacks:
        read = found[part]
        # The grey levels of the pieces converted only (read under each piece's mask).
        inks = (grey[pixel[read]], grey[pixel[vary[part]]])
        rows[:, part] = _convert(inks, stack, within, read, vary[part], threshold)
        part_boxes = _unsheared_boxes(stack, read, shifts, offsets, gray.shape[1])
        for k, (top, bottom, left, right) in zip(part.tolist(), part_boxes, strict=True):
            boxes[k] = (top + y0, bottom + y0, left, right) if found[k] else (0, 0, 0, 0)
    features = block_counts(rows[:, found].reshape(-1, 32)).reshape(1 + PEN_VARIANTS, -1, 64)
    return Layout(
        cuts=[len(paths) for paths in cuts_of],
        spans=spans,
        found=found,
        features=features[0],
        widths=widths,
        boxes=boxes,
        separators=_separators(marks, groups, labels, shifts, gray.shape[1], digit_height, y0),
        digit_height=digit_height,
        digit_width=digit_width,
        unit_scales=scales,
        variants=features[1:],
        joins=joins,
        tails=tails,
        straight=straight,
        heights=np.array([bottom - top for top, bottom, _, _ in boxes], dtype=np.intp),
        split_loop=np.array(
            [through_loop[gi][a] or through_loop[gi][b] for gi, a, b in spans], dtype=bool
        ),
    )


def _on_whole_cuts(
    spans: list[tuple[int, int, int]], read: np.ndarray, cuts: list[int]
) -> np.ndarray:
    """Which `read` spans lie on a whole cut of their group, the others being never chosen.

    A whole cut is a chain of read spans from the group's left side (cut 0) to its right
    side (cut ``cuts[group] - 1``). Only spans on one can be chosen (:func:`_best_path`):
    the others' scores are never used. A group with no such chain keeps all its read spans.
    """
    readable = [(gi, a, b) for (gi, a, b), r in zip(spans, read.tolist(), strict=True) if r]
    from_left = {(gi, 0) for gi in range(len(cuts))}  # cuts reached from the left side
    for gi, a, b in sorted(readable, key=lambda span: (span[0], span[2])):
        if (gi, a) in from_left:
            from_left.add((gi, b))
    to_right = {(gi, n - 1) for gi, n in enumerate(cuts)}  # cuts that reach the right side
    for gi, a, b in sorted(readable, key=lambda span: (span[0], -span[1])):
        if (gi, b) in to_right:
            to_right.add((gi, a))
    whole = [(gi, n - 1) in from_left for gi, n in enumerate(cuts)]
    return read & np.array(
        [not whole[gi] or ((gi, a) in from_left and (gi, b) in to_right) for gi, a, b in spans],
        dtype=bool,
    )


def _convert(
    inks: tuple[np.ndarray, np.ndarray],
    stack: np.ndarray,
    within: np.ndarray,
    read: np.ndarray,
    vary: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """NIST's steps for the pieces of a stack that are `read`, and their pen variants.

    The variants (:func:`_pen_variants`) are made of the pieces that `vary`; all are
    converted together. `inks` are the grey levels of the pieces read, then of those
    that vary, under each piece's box in the stack.

    Returns
    -------
    numpy.ndarray
        Packed rows ``(1 + PEN_VARIANTS, len(stack), 32)``: the pieces as cut, then each
        variant (the piece as cut where it does not vary); empty where not read.
    """
    variants = _pen_variants(stack[vary], within[vary])
    converted, _ = nist_steps(
        np.concatenate([inks[0]] + [inks[1]] * PEN_VARIANTS),
        np.concatenate([stack[read], *variants]),
        threshold,
    )
    rows = np.zeros((1 + PEN_VARIANTS, len(stack), 32), dtype=np.uint64)
    rows[:, read] = converted[: read.sum()]
    rows[1:, vary] = converted[read.sum() :].reshape(PEN_VARIANTS, vary.sum(), 32)
    return rows


def _pen_variants(stack: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stack of piece masks with the pen one pixel thinner and one pixel thicker.

    Thinner: 4-neighbour erosion, unless it would leave less than :data:`MIN_THINNED` of
    the ink (a pen too thin to lose a pixel: the mask is kept as it is). Thicker:
    4-neighbour dilation, kept `within` the piece's cuts.
    """
    thinner = stack.copy()
    thinner[:, 1:] &= stack[:, :-1]
    thinner[:, :-1] &= stack[:, 1:]
    thinner[:, :, 1:] &= stack[:, :, :-1]
    thinner[:, :, :-1] &= stack[:, :, 1:]
    kept = thinner.sum(axis=(1, 2)) >= MIN_THINNED * stack.sum(axis=(1, 2))
    thinner = np.where(kept[:, None, None], thinner, stack)
    return thinner, _grown(stack) & within


def read_layouts(
    layouts: list[Layout | None],
    model: Classifier,
    *,
    weights: Weights = DEFAULT_WEIGHTS,
    keep_separators: bool = False,
) -> list[Reading | None]:
    """Read the candidates of many lines with one pass of the model, then cut each line.

    Parameters
    ----------
    layouts : list of Layout or None
        From :func:`layout` (``None``: no ink, an empty reading).
    model : Classifier
        The digit classifier.
    weights : Weights
        How candidate pieces are scored.
    keep_separators : bool
        Keep ``.`` ``,`` ``'`` between digits.

    Returns
    -------
    list of Reading or None
        ``None`` for a line whose candidates the model gave no valid (finite)
        probabilities for.
    """
    present = [lay for lay in layouts if lay is not None]
    # Every variant of every piece, in one pass: (1 + PEN_VARIANTS, pieces, 64).
    features = np.concatenate(
        [np.concatenate([lay.features[None], lay.variants]) for lay in present]
        or [np.zeros((1 + PEN_VARIANTS, 0, 64))],
        axis=1,
    )
    probs, strange = _averaged(model, features.astype(np.float64))
    valid = np.isfinite(probs).all(axis=1) & np.isfinite(strange)
    out: list[Reading | None] = []
    start = 0
    for lay in layouts:
        if lay is None:
            out.append(Reading(()))
            continue
        part = slice(start, start + len(lay.features))
        start = part.stop
        if not valid[part].all():  # a broken model: no reading passed off as one
            out.append(None)
            continue
        out.append(
            choose(
                lay, probs[part], strange[part], weights=weights, keep_separators=keep_separators
            )
        )
    return out


def _averaged(model: Classifier, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities ``(n, 10)`` and strangeness ``(n,)``, averaged over variants.

    `features` is ``(v, n, 64)``: `v` variants of each of `n` pieces (NaN where the model
    gives no finite value). A variant equal to its piece as cut is not read again.
    """
    v, n, _ = features.shape
    if not n:
        return np.zeros((0, 10)), np.zeros(0)
    differ = (features[1:] != features[0]).any(axis=2)
    flat = np.concatenate([features[0], features[1:][differ]])
    p = model.predict_proba(flat, invalid="nan")
    far = model.strangeness(flat)
    d = np.zeros(len(flat)) if far is None else np.asarray(far, dtype=np.float64)
    probs = np.broadcast_to(p[:n], (v, n, 10)).copy()
    probs[1:][differ] = p[n:]
    strange = np.broadcast_to(d[:n], (v, n)).copy()
    strange[1:][differ] = d[n:]
    return probs.mean(axis=0), strange.mean(axis=0)


def choose(
    lay: Layout,
    probs: np.ndarray,
    strange: np.ndarray,
    *,
    weights: Weights = DEFAULT_WEIGHTS,
    keep_separators: bool = False,
) -> Reading:
    """The best cut of each group and of the line (dynamic programming over the cuts).

    Two neighbouring groups may also be read as one digit (:func:`_joins`).

    `probs` ``(m, 10)`` and `strange` ``(m,)`` are the model's for ``lay.features``.
    """
    index = np.cumsum(lay.found) - 1  # each span's row in the features
    best = probs.max(axis=1) if len(probs) else np.zeros(0)
    score: dict[tuple[int, int, int], tuple[float, int]] = {}
    for k, span in enumerate(lay.spans):
        if not lay.found[k]:
            continue
        i = int(index[k])
        prior = _width_prior(float(lay.widths[k]), lay.unit_width(span[0]))
        if lay.straight[k] and probs[i].argmax() == 1:
            prior = max(prior, STRAIGHT_ONE_PRIOR)
        s = (
            math.log(max(float(best[i]), 1e-9))
            + weights.width * prior
            - weights.strange * float(strange[i])
            - LOOP_CUT_COST * bool(lay.split_loop[k])
            - SHORT_COST * bool(lay.heights[k] < SHORT_HEIGHT * lay.digit_height)
            - weights.per_digit
        )
        score[span] = (s, k)
    for k in np.flatnonzero(lay.tails).tolist():
        score[lay.spans[k]] = (TAIL_SCORE, k)
    glyphs: list[Glyph] = []
    for gi, a, b in _best_line(lay.cuts, lay.joins, score):
        k = score[(gi, a, b)][1]
        if lay.tails[k]:
            continue  # a tail: no digit
        i = int(index[k])
        p = probs[i]
        digit = int(p.argmax())
        glyph = Glyph(str(digit), float(p[digit]), lay.boxes[k], lay.features[i], p)
        glyphs.append(glyph)
    if keep_separators and len(glyphs) >= 2:
        first = min(g.box[2] for g in glyphs)
        last = max(g.box[3] for g in glyphs)
        glyphs += [s for s in lay.separators if first < (s.box[2] + s.box[3]) / 2 < last]
    glyphs.sort(key=lambda g: (g.box[2] + g.box[3]) / 2)
    return Reading(tuple(glyphs))


def read_line(
    gray: np.ndarray,
    model: Classifier,
    *,
    invert: bool | None = None,
    keep_separators: bool = False,
    weights: Weights = DEFAULT_WEIGHTS,
) -> Reading:
    """Read the digits of one line of handwriting.

    Parameters
    ----------
    gray : numpy.ndarray
        Grey levels ``(h, w)``, float 0..1 (1 = white), as
        :func:`~digitcli.conversion.decode.scaled` gives.
    model : Classifier
        The digit classifier (:class:`digitcli.model.Model`).
    invert : bool or None
        Polarity, see :func:`~digitcli.conversion.ink.ink_strength`.
    keep_separators : bool
        Keep ``.`` ``,`` ``'`` between digits in the reading.
    weights : Weights
        How candidate pieces are scored.

    Returns
    -------
    Reading
        The glyphs in reading order; none when the image holds no digit.

    Raises
    ------
    ModelError
        If the model gives no valid probabilities for the line's pieces.
    """
    lay = layout(gray, invert=invert, every_span=False)
    reading = read_layouts([lay], model, weights=weights, keep_separators=keep_separators)[0]
    if reading is None:
        raise ModelError("the model gave no valid probabilities")
    return reading


def _best_line(
    cuts: list[int], joins: list[int], score: dict[tuple[int, int, int], tuple[float, int]]
) -> list[tuple[int, int, int]]:
    """The pieces of a line whose scores sum highest, and their spans from left to right.

    Each group is cut its best way (:func:`_best_path`), or two neighbouring groups are
    read as one: ``joins[j]`` is the first of the two, and their unit, read whole, is
    ``len(cuts) - len(joins) + j``. Spans are ``(unit, first cut, last cut)``.
    """
    n = len(cuts) - len(joins)
    paths = [_best_path(cuts[gi], gi, score) for gi in range(n)]
    own = [
        sum(score[(gi, a, b)][0] for a, b in path) if path else -math.inf
        for gi, path in enumerate(paths)
    ]
    join_at = {first: n + j for j, first in enumerate(joins)}
    best = [0.0] + [-math.inf] * n  # best[i]: the first i groups
    back: list[tuple[int, list[tuple[int, int, int]]]] = [(0, [])] * (n + 1)
    for i in range(n):
        alone = best[i] + own[i]
        if alone >= best[i + 1]:
            best[i + 1] = alone
            back[i + 1] = (i, [(i, a, b) for a, b in paths[i]])
        unit = join_at.get(i)
        if unit is not None and (unit, 0, 1) in score:
            joined = best[i] + score[(unit, 0, 1)][0]
            if joined > best[i + 2]:
                best[i + 2] = joined
                back[i + 2] = (i, [(unit, 0, 1)])
    out: list[tuple[int, int, int]] = []
    i = n
    while i > 0:
        i, chosen = back[i]
        out = chosen + out
    return out


def _best_path(
    n: int, gi: int, score: dict[tuple[int, int, int], tuple[float, int]]
) -> list[tuple[int, int]]:
    """The cuts from a group's left side to its right whose pieces score best in sum.

    Cuts are indices ``0 .. n - 1``; the result is the path's ``(first, last)`` pairs.
    """
    best = [-math.inf] * n
    back = [0] * n
    best[0] = 0.0
    for b in range(1, n):
        for a in range(b):
            key = (gi, a, b)
            if key in score and best[a] > -math.inf:
                s = best[a] + score[key][0]
                if s > best[b]:
                    best[b], back[b] = s, a
    path = []
    b = n - 1
    while b > 0:
        a = back[b]
        path.append((a, b))
        b = a
    return path[::-1]


def _largest_parts(stack: np.ndarray) -> np.ndarray:
    """Drop the slivers a cut leaves: pieces under a fifth of each mask's largest."""
    table = piece_table(stack)
    if not len(table):
        return stack
    largest = np.zeros(len(stack))
    np.maximum.at(largest, table.image, table.size)
    return table.keep(table.size >= 0.2 * largest[table.image])


def _unsheared_boxes(
    stack: np.ndarray, found: np.ndarray, shifts: np.ndarray, offsets: np.ndarray, width: int
) -> list[tuple[int, int, int, int]]:
    """The box in the image of each mask of a stack cut from the sheared line.

    Mask ``k`` starts at the sheared line's column ``offsets[k]``; row ``y`` of the line was
    shifted right by ``shifts[y]``. Empty masks get ``(0, 0, 0, 0)``.
    """
    n, h, w = stack.shape
    on = stack.any(axis=2)  # (n, h)
    first = stack.argmax(axis=2)
    last = w - 1 - stack[:, :, ::-1].argmax(axis=2)
    unshift = offsets[:, None] - shifts[None, :]
    lefts = np.where(on, first + unshift, np.iinfo(np.intp).max).min(axis=1)
    rights = np.where(on, last + unshift, -1).max(axis=1)
    tops = on.argmax(axis=1)
    bottoms = h - on[:, ::-1].argmax(axis=1)
    lefts = np.clip(lefts, 0, width - 1)
    rights = np.clip(rights, 0, width - 1) + 1
    rows = zip(
        found.tolist(),
        tops.tolist(),
        bottoms.tolist(),
        lefts.tolist(),
        rights.tolist(),
        strict=True,
    )
    return [(t, b, left, right) if ok else (0, 0, 0, 0) for ok, t, b, left, right in rows]


def _separators(
    marks: list[_Group],
    groups: list[_Group],
    labels: np.ndarray,
    shifts: np.ndarray,
    width: int,
    digit_height: float,
    y0: int,
) -> list[Glyph]:
    """The marks that may be thousands separators or a decimal point (not dashes).

    The marks' rows count from the band's top, `y0` rows down the image.
    """
    top = float(np.median([g.top for g in groups]))
    out = []
    for m in marks:
        if m.width > 0.5 * digit_height:  # a dash
            continue
        piece = np.isin(labels[:, m.left : m.right], m.pieces)
        box = _unsheared_boxes(
            piece[None], np.ones(1, dtype=bool), shifts, np.array([m.left]), width
        )[0]
        high = m.bottom < top + 0.4 * digit_height
        text = "'" if high else ("," if m.height > 1.5 * m.width else ".")
        out.append(Glyph(text, 1.0, (box[0] + y0, box[1] + y0, box[2], box[3])))
    return out


__all__ = [
    "Classifier",
    "Glyph",
    "Layout",
    "Reading",
    "Weights",
    "choose",
    "layout",
    "read_layouts",
    "read_line",
    "remove_lines",
    "upright",
]
