"""Synthetic "handwritten-looking" digit images.

Digits are drawn as pen strokes (polylines in a unit box) and rendered with Pillow using
4x supersampling, so no fonts are needed.  Every random choice (pen width, slant, wobble,
rotation, proportions and the variant of the shape) is taken from
``numpy.random.default_rng(seed)``, so the same arguments always give a byte-identical image.

Examples
--------
>>> img = render_digit(7, seed=3)
>>> img.size, img.mode
((28, 28), 'RGB')
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "END_MARKS",
    "SEPARATORS",
    "cut_glyph",
    "digit_strokes",
    "number_image",
    "number_sample",
    "pen_glyph",
    "render_digit",
    "segment_digit",
]

_SUPERSAMPLE = 4
_MIN_PEN_PX = 1.5
_MAX_STROKES = 4  # no digit has more strokes; keeps the number of random draws fixed

Stroke = np.ndarray  # shape (n, 2): x, y in the unit box, y pointing down


def _arc(cx: float, cy: float, rx: float, ry: float, t0: float, t1: float) -> Stroke:
    """Elliptical arc; angles in degrees, 0 = right, 90 = top, increasing = counter-clockwise."""
    n = max(4, int(abs(t1 - t0) / 7.5) + 1)
    t = np.radians(np.linspace(t0, t1, n))
    return np.column_stack([cx + rx * np.cos(t), cy - ry * np.sin(t)])


def _bezier(*ctrl: tuple[float, float], n: int = 16) -> Stroke:
    """Quadratic (3 control points) or cubic (4 control points) Bezier curve."""
    p = np.asarray(ctrl, dtype=float)
    t = np.linspace(0.0, 1.0, n)[:, None]
    u = 1.0 - t
    if len(p) == 3:
        return u * u * p[0] + 2 * u * t * p[1] + t * t * p[2]
    return u**3 * p[0] + 3 * u * u * t * p[1] + 3 * u * t * t * p[2] + t**3 * p[3]


def _poly(*pts: tuple[float, float]) -> Stroke:
    return np.asarray(pts, dtype=float)


def _join(*parts: Stroke) -> Stroke:
    """Concatenate pieces into one stroke, dropping a repeated point at each seam."""
    out = [parts[0]]
    for part in parts[1:]:
        if np.allclose(out[-1][-1], part[0]):
            part = part[1:]
        out.append(part)
    return np.concatenate(out)


def _eight() -> Stroke:
    # Vertical figure-eight (Lissajous 1:2), written from the top right: counter-clockwise
    # round the smaller top loop, across the middle, clockwise round the bottom loop.
    t = np.linspace(-0.5, 2 * np.pi - 0.3, 64)
    y = (0.5 - 0.5 * np.cos(t)) ** 1.15  # crossing at ~0.45 -> smaller top loop
    width = np.where(y < 0.45, 0.40, 0.50)
    x = 0.5 - width * np.sin(2 * t)
    return np.column_stack([x, y])


def _build_variants() -> dict[int, list[list[Stroke]]]:
    v: dict[int, list[list[Stroke]]] = {}
    v[0] = [[_arc(0.5, 0.5, 0.46, 0.5, 100, 470)]]
    v[1] = [
        [_poly((0.22, 0.24), (0.62, 0.0), (0.6, 1.0))],
        [_poly((0.22, 0.24), (0.62, 0.0), (0.6, 1.0)), _poly((0.3, 1.0), (0.9, 1.0))],
        [_poly((0.38, 0.14), (0.58, 0.0), (0.54, 1.0))],
    ]
    v[2] = [
        [
            _join(
                _arc(0.5, 0.27, 0.42, 0.27, 160, -30),
                _bezier((0.864, 0.405), (0.55, 0.72), (0.05, 1.0)),
                _poly((0.05, 1.0), (0.95, 0.98)),
            )
        ],
        # curled: a small loop where the diagonal meets the base
        [
            _join(
                _arc(0.5, 0.27, 0.42, 0.27, 160, -30),
                _bezier((0.864, 0.405), (0.6, 0.75), (0.12, 0.92)),
                _arc(0.2, 0.86, 0.12, 0.1, 240, -60),
                _poly((0.26, 0.95), (0.95, 0.97)),
            )
        ],
    ]
    v[3] = [
        [
            _join(
                _arc(0.48, 0.25, 0.40, 0.25, 155, -110),
                _arc(0.47, 0.75, 0.45, 0.25, 110, -155),
            )
        ],
        # flat top
        [
            _join(
                _poly((0.1, 0.0), (0.85, 0.0), (0.4, 0.38)),
                _arc(0.47, 0.7, 0.45, 0.3, 100, -155),
            )
        ],
    ]
    v[4] = [
        # closed: diagonal meets the upright at the top
        [_poly((0.64, 0.0), (0.04, 0.66), (0.96, 0.66)), _poly((0.68, 0.0), (0.68, 1.0))],
        # open: near-vertical left stroke, upright on the right
        [_poly((0.16, 0.0), (0.08, 0.62), (0.96, 0.62)), _poly((0.72, 0.04), (0.72, 1.0))],
        # open, slanted: the diagonal stops short of the upright
        [_poly((0.42, 0.0), (0.04, 0.6), (0.96, 0.6)), _poly((0.74, 0.12), (0.7, 1.0))],
    ]
    v[5] = [
        [
            _join(_poly((0.22, 0.0), (0.169, 0.454)), _arc(0.48, 0.68, 0.44, 0.32, 130, -145)),
            _poly((0.22, 0.0), (0.9, 0.0)),
        ]
    ]
    v[6] = [
        [
            _join(
                _bezier((0.8, 0.0), (0.3, 0.08), (0.06, 0.38), (0.06, 0.7)),
                _arc(0.5, 0.7, 0.44, 0.3, 180, 520),
            )
        ],
        # straight stem, small loop
        [
            _join(
                _poly((0.78, 0.0), (0.1, 0.72)),
                _arc(0.45, 0.78, 0.36, 0.22, 195, 540),
            )
        ],
    ]
    v[7] = [
        [_poly((0.05, 0.0), (0.95, 0.0), (0.38, 1.0))],
        [_poly((0.05, 0.0), (0.95, 0.0), (0.38, 1.0)), _poly((0.42, 0.52), (0.9, 0.52))],
        [_poly((0.04, 0.13), (0.06, 0.0), (0.95, 0.0), (0.4, 1.0))],
        # curved stem
        [_join(_poly((0.05, 0.0), (0.95, 0.0)), _bezier((0.95, 0.0), (0.5, 0.4), (0.4, 1.0)))],
    ]
    v[8] = [[_eight()]]
    v[9] = [
        [_join(_arc(0.5, 0.27, 0.42, 0.27, 15, 360), _poly((0.92, 0.27), (0.86, 1.0)))],
        # curved tail
        [
            _join(
                _arc(0.5, 0.27, 0.42, 0.27, 15, 360),
                _bezier((0.92, 0.27), (0.9, 0.8), (0.3, 1.0)),
            )
        ],
    ]
    return v


def _build_cheque_variants() -> dict[int, list[list[Stroke]]]:
    """Shapes common in handwritten amounts (cheques, invoices) that Digits' writers lack.

    Continental 1s (a long up-stroke flag, with or without a foot), 7s crossed through the
    stem, open European 4s, 2s with a loop (at the start or at the turn) or a straight
    diagonal, and one-stroke 5s. (9s on a straight stem are common shapes already; more of
    them, on a long or slanting stem, made open 4s read as 9s.)
    """
    v: dict[int, list[list[Stroke]]] = {d: [] for d in range(10)}
    v[1] = [
        # continental: the flag starts low and far left
        [_poly((0.0, 0.5), (0.72, 0.0), (0.6, 1.0))],
        # continental, curved flag
        [_join(_bezier((0.02, 0.58), (0.3, 0.22), (0.74, 0.0)), _poly((0.74, 0.0), (0.62, 1.0)))],
        # continental with a foot
        [_poly((0.05, 0.42), (0.66, 0.0), (0.6, 1.0)), _poly((0.22, 1.0), (0.98, 1.0))],
        # a long flag, a short stem's worth of it
        [_poly((0.0, 0.66), (0.78, 0.0), (0.7, 1.0))],
    ]
    v[2] = [
        # a loop where the bow turns into the diagonal
        [
            _join(
                _arc(0.5, 0.25, 0.4, 0.25, 170, -20),
                _bezier((0.876, 0.336), (0.7, 0.7), (0.172, 0.972)),
                _arc(0.22, 0.84, 0.14, 0.14, 250, -80),
                _poly((0.244, 0.978), (0.98, 0.93)),
            )
        ],
        # the pen starts with a small loop at the top left, then the bow
        [
            _join(
                _arc(0.195, 0.258, 0.12, 0.12, 480, 138),
                _arc(0.5, 0.27, 0.42, 0.27, 160, -30),
                _bezier((0.864, 0.405), (0.55, 0.72), (0.05, 1.0)),
                _poly((0.05, 1.0), (0.95, 0.98)),
            )
        ],
        # a Z-like 2: round top, straight diagonal, long base
        [
            _join(
                _arc(0.5, 0.22, 0.4, 0.22, 165, -15),
                _poly((0.886, 0.277), (0.04, 1.0), (0.96, 1.0)),
            )
        ],
    ]
    v[4] = [
        # open: the down-stroke slants, the bar runs past the upright
        [_poly((0.3, 0.0), (0.02, 0.64), (1.0, 0.6)), _poly((0.7, 0.1), (0.66, 1.0))],
        # open, the upright taller than the left stroke
        [_poly((0.2, 0.16), (0.06, 0.62), (0.94, 0.62)), _poly((0.64, 0.0), (0.64, 1.0))],
    ]
    v[5] = [
        # one stroke: the bar first, then the stem and the belly
        [
            _join(
                _poly((0.9, 0.0), (0.2, 0.02), (0.16, 0.44)), _arc(0.5, 0.68, 0.42, 0.32, 140, -150)
            )
        ],
    ]
    v[7] = [
        # crossed through the stem
        [_poly((0.05, 0.0), (0.95, 0.0), (0.4, 1.0)), _poly((0.3, 0.5), (0.9, 0.46))],
        # crossed, with a tick at the start
        [
            _poly((0.02, 0.16), (0.08, 0.0), (0.95, 0.02), (0.45, 1.0)),
            _poly((0.36, 0.52), (0.92, 0.5)),
        ],
        # crossed, a curved stem
        [
            _join(_poly((0.05, 0.0), (0.95, 0.0)), _bezier((0.95, 0.0), (0.55, 0.4), (0.45, 1.0))),
            _poly((0.38, 0.5), (0.95, 0.5)),
        ],
    ]
    return v


_VARIANTS = _build_variants()
_CHEQUE_VARIANTS = _build_cheque_variants()

#: The shape sets: ``"common"``, the shapes :func:`render_digit` draws by default, and
#: ``"cheque"``, those and the shapes of handwritten amounts (:func:`_build_cheque_variants`).
STYLES = ("common", "cheque")


def _variants(digit: int, styles: str) -> list[list[Stroke]]:
    if styles not in STYLES:
        raise ValueError(f"styles must be one of {STYLES}, got {styles!r}")
    common = _VARIANTS[digit]
    return common if styles == "common" else common + _CHEQUE_VARIANTS[digit]


def _check_digit(digit: int) -> int:
    if isinstance(digit, bool) or int(digit) != digit or not 0 <= int(digit) <= 9:
        raise ValueError(f"digit must be an integer 0-9, got {digit!r}")
    return int(digit)


def digit_strokes(
    digit: int, *, variant: int = 0, styles: str = "common"
) -> list[list[tuple[float, float]]]:
    """Polylines (in a unit box, x right, y down, 0..1) that draw the digit as a person writes it.

    Parameters
    ----------
    digit : int
        The digit, 0-9.
    variant : int, optional
        Which handwriting variant to return (0, 5 and 8 have one; the others several).
        Taken modulo the number of variants. Default 0.
    styles : {"common", "cheque"}, optional
        The shape set (:data:`STYLES`): ``"cheque"`` adds the shapes of handwritten
        amounts after the common ones. Default ``"common"``.

    Returns
    -------
    list of list of tuple of float
        One list of ``(x, y)`` points per pen stroke, in writing order.

    Raises
    ------
    ValueError
        If `digit` is not an integer in 0-9.
    """
    variants = _variants(_check_digit(digit), styles)
    strokes = variants[variant % len(variants)]
    return [[(float(x), float(y)) for x, y in s] for s in strokes]


def _smooth_field(rng: np.random.Generator, k: int = 3) -> tuple[np.ndarray, ...]:
    """Parameters of a smooth random 2-D displacement field (sum of k plane waves per axis)."""
    freq = rng.uniform(0.4, 1.3, size=(2, k, 2)) * rng.choice([-1.0, 1.0], size=(2, k, 2))
    phase = rng.uniform(0.0, 2 * np.pi, size=(2, k))
    amp = rng.uniform(0.5, 1.0, size=(2, k))
    amp /= np.sqrt((amp**2).sum(axis=1, keepdims=True) / 2)  # rms ~ 1 per axis
    return freq, phase, amp


def _apply_field(pts: np.ndarray, field: tuple[np.ndarray, ...], scale: float) -> np.ndarray:
    freq, phase, amp = field
    out = pts.copy()
    for axis in range(2):
        arg = 2 * np.pi * (pts @ freq[axis].T) + phase[axis]  # (n, k)
        out[:, axis] += scale * (np.sin(arg) @ amp[axis])
    return out


def _shape(
    variant: list[Stroke],
    aspect: float,
    slant: float,
    angle: float,
    field: tuple[np.ndarray, ...],
    offsets: np.ndarray,
    jitter: float,
) -> list[Stroke]:
    """Unit box -> physical shape: proportions, wobble, slant, rotation (about the centre).

    The result is in units of the digit's height, centred vertically on 0.
    """
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    shaped = []
    for i, s in enumerate(variant):
        p = s * (aspect, 1.0)
        if jitter:
            p = _apply_field(p, field, jitter) + offsets[i] * jitter
        x = p[:, 0] + slant * (0.5 - p[:, 1])
        y = p[:, 1] - 0.5
        shaped.append(np.column_stack([x * cos_a - y * sin_a, x * sin_a + y * cos_a]))
    return shaped


def render_digit(
    digit: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (28, 28),
    stroke: float | None = None,
    slant: float | None = None,
    jitter: float = 0.03,
    ink: tuple[int, int, int] = (20, 20, 20),
    paper: tuple[int, int, int] = (255, 255, 255),
    margin: float = 0.15,
    digit_height: float | None = None,
    styles: str = "common",
    variant: int | None = None,
) -> Image.Image:
    """Render a synthetic handwritten digit.

    Parameters
    ----------
    digit : int
        The digit to draw, 0-9.
    seed : int, optional
        Seed for ``numpy.random.default_rng``; same arguments give a byte-identical image.
    size : tuple of int, optional
        Output ``(width, height)`` in pixels. Default ``(28, 28)``.
    stroke : float or None, optional
        Pen width as a fraction of the digit height; ``None`` picks one in 0.06-0.14.
        The pen is never thinner than 1.5 output pixels.
    slant : float or None, optional
        Horizontal shear (positive leans right); ``None`` picks one in -0.25..0.25.
    jitter : float, optional
        Amplitude of the smooth random wobble of the strokes, as a fraction of the digit box.
        ``0`` gives clean strokes. Default 0.03.
    ink, paper : tuple of int, optional
        RGB colours of the pen and the background.
    margin : float, optional
        Fraction of the image width/height kept blank around the digit. Default 0.15.
    digit_height : float or None, optional
        Fraction of the image height the digit (including pen width) occupies;
        ``None`` means ``1 - 2 * margin``. The digit is shrunk further if it would not fit
        the width left by `margin`.
    styles : {"common", "cheque"}, optional
        The shapes the variant is drawn from (:data:`STYLES`); ``"cheque"`` adds continental
        1s, crossed 7s, open 4s and the like. The other random choices do not depend on it.
    variant : int or None, optional
        Draw this variant of the set (as :func:`digit_strokes` numbers them, modulo their
        number) instead of one chosen at random; the other random choices stay the same.

    Returns
    -------
    PIL.Image.Image
        An RGB image with the digit centred.

    Raises
    ------
    ValueError
        If `digit` is not 0-9 or a size/fraction argument is out of range.
    """
    d = _check_digit(digit)
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"margin must be in [0, 0.5), got {margin!r}")
    if digit_height is None:
        digit_height = 1.0 - 2.0 * margin
    if not 0.0 < digit_height <= 1.0:
        raise ValueError(f"digit_height must be in (0, 1], got {digit_height!r}")

    rng = np.random.default_rng(seed)
    # Always draw every random value in the same order, so overriding one argument
    # does not change the others.
    variants = _variants(d, styles)
    chosen = int(rng.random() * len(variants))
    shape = variants[chosen if variant is None else int(variant) % len(variants)]
    r_stroke = rng.uniform(0.06, 0.14)
    r_slant = rng.uniform(-0.25, 0.25)
    angle = np.radians(rng.uniform(-8.0, 8.0))
    aspect = rng.uniform(0.5, 0.68)  # width of the unit box relative to its height
    scale = rng.uniform(0.9, 1.0)
    field = _smooth_field(rng)
    offsets = rng.normal(0.0, 0.5, size=(_MAX_STROKES, 2))
    stroke = r_stroke if stroke is None else float(stroke)
    slant = r_slant if slant is None else float(slant)

    shaped = _shape(shape, aspect, slant, angle, field, offsets, jitter)

    # Fit the skeleton (plus pen) into the available box, centred.
    allp = np.concatenate(shaped)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    extent = np.maximum(hi - lo, 1e-6)
    box_h = digit_height * height
    pen = max(stroke * box_h, _MIN_PEN_PX)
    avail_w = max(width * (1.0 - 2.0 * margin) - pen, 1.0)
    avail_h = max(box_h * scale - pen, 1.0)
    k = min(avail_w / extent[0], avail_h / extent[1]) * _SUPERSAMPLE
    centre = np.array([width, height]) * (_SUPERSAMPLE / 2.0) - (lo + hi) / 2.0 * k

    strokes = [[(float(a), float(b)) for a, b in p * k + centre] for p in shaped]
    return _ink_on_paper(strokes, max(1, round(pen * _SUPERSAMPLE)), (width, height), ink, paper)


def _ink_on_paper(
    strokes: list[list[tuple[float, float]]],
    pen: int,
    size: tuple[int, int],
    ink: tuple[int, int, int],
    paper: tuple[int, int, int],
) -> Image.Image:
    """Strokes drawn with a round pen at :data:`_SUPERSAMPLE` times `size`, then reduced.

    `strokes` are polylines and `pen` a width, both in the supersampled pixels.
    """
    width, height = size
    big = Image.new("L", (width * _SUPERSAMPLE, height * _SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    r = pen / 2.0
    for xy in strokes:
        draw.line(xy, fill=255, width=pen, joint="curve")
        for cx, cy in (xy[0], xy[-1]):  # round caps
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    ink_img = Image.new("RGB", size, tuple(int(c) for c in ink))
    paper_img = Image.new("RGB", size, tuple(int(c) for c in paper))
    return Image.composite(ink_img, paper_img, big.reduce(_SUPERSAMPLE))


def pen_glyph(digit: int, *, seed: int, pen: float, tight: bool = False) -> Image.Image:
    """A glyph drawn with a given pen, on a wide page or cropped tight to its ink.

    The glyph's shape, slant and wobble depend on `seed` alone, so the same glyph can be
    drawn with any pen.

    Parameters
    ----------
    digit : int
        The digit, 0-9.
    seed : int
        The glyph (see :func:`render_digit`).
    pen : float
        Pen width as a fraction of the height of the path the pen's tip follows (about; the
        glyph's ink is taller by the pen). 0 gives the thinnest pen, 1.5 pixels.
    tight : bool
        Crop the image to the ink's box, so the ink touches every side; else the glyph
        fills 30% of the height of a 160-pixel page.

    Returns
    -------
    PIL.Image.Image
        RGB, dark ink on white.
    """
    # render_digit's stroke is a fraction of the ink's height: tip path + pen, the path
    # being about 0.95 of the box.
    stroke = 0.95 * pen / (1.0 + pen)
    if not tight:
        return render_digit(
            digit,
            seed=seed,
            size=(160, 160),
            stroke=stroke or 1.5 / 48,
            digit_height=0.3,
            margin=0.3,
        )
    img = render_digit(digit, seed=seed, size=(96, 96), stroke=stroke or 1.5 / 86, margin=0.05)
    from digitcli.conversion.pieces import ink_boxes

    top, bottom, left, right = (
        int(edge[0]) for edge in ink_boxes(np.asarray(img.convert("L"))[None] < 128)
    )
    return img.crop((left, top, right, bottom))


#: Heights in pixels of the images :func:`cut_glyph` draws (the digit fills about 80%).
CUT_HEIGHTS = (22, 50)


def cut_glyph(digit: int, *, seed: int, variant: int | None = None) -> Image.Image:
    """A digit as cut from a scanned handwritten amount: small, soft and noisy.

    The shapes are the ``"cheque"`` set of :func:`render_digit`, drawn about 16-40 pixels
    high (the pen 1.5 pixels or more) in dark ink on light grey paper, blurred a little as
    by a scanner and JPEG, with grain. One in three has a fragment of a neighbouring
    digit's stroke running in from its left or right side, as a cut between touching digits
    leaves.
    Every choice is taken from `seed`: the same seed gives the same image.

    Parameters
    ----------
    digit : int
        The digit, 0-9.
    seed : int
        Seed of the glyph (its shape is :func:`render_digit`'s with this seed) and of the
        rest of the random choices.
    variant : int or None, optional
        The shape, as :func:`render_digit`'s `variant` (of the ``"cheque"`` set).

    Returns
    -------
    PIL.Image.Image
        Grey (mode ``L``), as wide as it is high.
    """
    from PIL import ImageFilter

    d = _check_digit(digit)
    rng = np.random.default_rng([seed, 0x0C07])  # apart from render_digit's draws
    size = int(rng.integers(*CUT_HEIGHTS))
    ink = int(rng.integers(10, 90))
    paper = int(rng.integers(170, 245))
    blur = rng.uniform(0.0, 0.7)
    grain = rng.uniform(0.0, 10.0)
    fragment = rng.random() < 1 / 3
    side = rng.random() < 0.5
    reach, low, high = rng.uniform(0.0, 1.0, size=3)
    img = render_digit(
        d,
        seed=seed,
        size=(size, size),
        margin=0.1,
        ink=(ink,) * 3,
        paper=(paper,) * 3,
        styles="cheque",
        variant=variant,
    ).convert("L")
    if fragment:
        draw = ImageDraw.Draw(img)
        # From the cut (the image's side) into the image, at most 8% of its width.
        inner = (0.02 + 0.06 * reach) * size
        xs = (0.0, inner) if side else (size - 1.0, size - 1.0 - inner)
        ys = (low * 0.5 * size, (0.5 + 0.5 * high) * size)
        pen = max(1, round(0.07 * size))
        draw.line([(xs[0], ys[0]), (xs[1], ys[1])], fill=ink, width=pen)
    if blur > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    grey = np.asarray(img, dtype=np.float64) + rng.normal(0.0, grain, size=(size, size))
    return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="L")


#: Corners of a seven-segment digit in a unit box (x right, y down).
_SEGMENT_CORNERS = {
    "tl": (0.0, 0.0),
    "tr": (1.0, 0.0),
    "ml": (0.0, 0.5),
    "mr": (1.0, 0.5),
    "bl": (0.0, 1.0),
    "br": (1.0, 1.0),
}
#: The segments, a (top) to g (middle), as pairs of corners.
_SEGMENTS = {
    "a": ("tl", "tr"),
    "b": ("tr", "mr"),
    "c": ("mr", "br"),
    "d": ("bl", "br"),
    "e": ("ml", "bl"),
    "f": ("tl", "ml"),
    "g": ("ml", "mr"),
}
_SEGMENT_DIGITS = {
    0: "abcdef",
    1: "bc",
    2: "abged",
    3: "abgcd",
    4: "fgbc",
    5: "afgcd",
    6: "afgedc",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


def segment_digit(digit: int, *, seed: int, size: int = 64) -> Image.Image:
    """A digit written as seven straight segments, as some people write in a form's boxes.

    Digits' writers never write this way (a square 0, a 2 like a Z, an open-topped 4, a
    6 and a 9 with flat hooks), so a model fitted on Digits misreads many of these: it is
    the "user style" of the adaptation test and benchmark (``train --images``). Each
    corner is moved at random, and the width, slant and pen vary with `seed`.

    Parameters
    ----------
    digit : int
        The digit, 0-9.
    seed : int
        Seed of the random choices; the same arguments give the same image.
    size : int
        Width and height in pixels.

    Returns
    -------
    PIL.Image.Image
        RGB, dark ink on white.
    """
    d = _check_digit(digit)
    rng = np.random.default_rng(seed)
    aspect = rng.uniform(0.5, 0.7)
    slant = rng.uniform(-0.1, 0.2)
    pen = rng.uniform(0.07, 0.12)
    corners = {
        name: np.asarray(xy, dtype=float) + rng.normal(0.0, 0.04, 2)
        for name, xy in _SEGMENT_CORNERS.items()
    }
    big = size * _SUPERSAMPLE
    height = 0.7 * big

    def place(p: np.ndarray) -> tuple[float, float]:
        x = (p[0] - 0.5) * aspect + slant * (0.5 - p[1])
        return (big / 2 + x * height, big / 2 + (p[1] - 0.5) * height)

    strokes = [[place(corners[c]) for c in _SEGMENTS[s]] for s in _SEGMENT_DIGITS[d]]
    pen_px = max(1, round(pen * height))
    return _ink_on_paper(strokes, pen_px, (size, size), (20, 20, 20), (255, 255, 255))


#: Separators :func:`number_image` draws between digits: drawn small, low (``.`` ``,``)
#: or high (``'``).
SEPARATORS = ".,'"
#: Marks :func:`number_image` draws after the last digit: a dash, an equals sign, a long dash.
END_MARKS = ("-", "=", "\u2014")

#: Ballpoint inks: near-black, dark grey, blue-black, blue.
_INKS = ((28, 30, 38), (52, 54, 62), (24, 36, 96), (30, 48, 138))
#: Tints of the lines of a security ground (cheque paper).
_TINTS = ((150, 175, 215), (165, 200, 170), (215, 170, 180), (175, 175, 175), (200, 185, 150))


def _parse_number(text: str) -> list[str]:
    """`text` as a list of tokens: single digits, separators and at most one end mark (last)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    body, end = text, ""
    for mark in END_MARKS:
        if text.endswith(mark):
            body, end = text[: -len(mark)], mark
            break
    tokens = list(body)
    ok = bool(tokens) and tokens[0].isdigit() and tokens[-1].isdigit()
    for a, b in zip(tokens, tokens[1:], strict=False):
        ok = ok and (a.isdigit() or b.isdigit()) and (a.isdigit() or a in SEPARATORS)
    ok = ok and all(t in "0123456789" + SEPARATORS for t in tokens)
    if not ok:
        raise ValueError(
            f"text must be digits 0-9 with single separators {SEPARATORS!r} between them and "
            f"an optional end mark {END_MARKS!r}, got {text!r}"
        )
    return tokens + ([end] if end else [])


def _dense(stroke: np.ndarray, step: float) -> np.ndarray:
    """The polyline with points inserted so that neighbours are at most `step` apart."""
    if len(stroke) < 2:
        return stroke
    seg = np.diff(stroke, axis=0)
    n = np.maximum(1, np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / step)).astype(int)
    parts = [stroke[i] + seg[i] * (np.arange(n[i])[:, None] / n[i]) for i in range(len(seg))]
    return np.concatenate([*parts, stroke[-1:]])


class _Rows:
    """Leftmost and rightmost skeleton x in each 1-pixel row of a strip of the page."""

    def __init__(self, top: float, rows: int) -> None:
        self.top, self.rows = top, rows

    def _index(self, pts: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(pts[:, 1] - self.top).astype(int), 0, self.rows - 1)

    def right(self, pts: np.ndarray) -> np.ndarray:
        out = np.full(self.rows, -np.inf)
        np.maximum.at(out, self._index(pts), pts[:, 0])
        return out

    def left(self, pts: np.ndarray) -> np.ndarray:
        out = np.full(self.rows, np.inf)
        np.minimum.at(out, self._index(pts), pts[:, 0])
        return out


def _widen(profile: np.ndarray, r: int) -> np.ndarray:
    """Running maximum of `profile` over ``2 r + 1`` rows (a right edge seen by a round pen)."""
    out = profile.copy()
    for k in range(1, r + 1):
        out[k:] = np.maximum(out[k:], profile[:-k])
        out[:-k] = np.maximum(out[:-k], profile[k:])
    return out


def _nearest(a: np.ndarray, b: np.ndarray) -> float:
    """The least distance between a point of `a` and a point of `b` (``(n, 2)`` each)."""
    # Points further apart across than one pair's distance are not the nearest pair: leave
    # them out (the nearest pair is kept, and its distance computed just as among all).
    i, j = int(a[:, 0].argmin()), int(b[:, 0].argmax())
    bound = np.sqrt(((a[i] - b[j]) ** 2).sum())
    a = a[(a[:, 0] <= b[j, 0] + bound) & (a[:, 0] >= b[:, 0].min() - bound)]
    b = b[(b[:, 0] >= a[:, 0].min() - bound) & (b[:, 0] <= a[:, 0].max() + bound)]
    return float(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1).min()))


def _mark_strokes(
    mark: str, rng: np.random.Generator, h: float, w: float, pen: float
) -> list[np.ndarray]:
    """A separator or end mark as polylines in pixels, x from 0, the baseline at y = 0."""
    if mark == ".":
        length = pen * rng.uniform(0.15, 0.7)
        y = -pen / 2 - h * rng.uniform(0.0, 0.05)
        return [_poly((0.0, y), (length, y - length * rng.uniform(-0.3, 0.5)))]
    if mark == ",":
        top = -h * rng.uniform(0.0, 0.08) - pen / 2
        depth = h * rng.uniform(0.14, 0.24)
        return [_bezier((0.08 * h, top), (0.09 * h, top + depth * 0.5), (0.0, top + depth), n=8)]
    if mark == "'":
        top = -h * rng.uniform(0.92, 1.05)
        length = h * rng.uniform(0.14, 0.24)
        return [_poly((0.06 * h, top), (0.06 * h - length * rng.uniform(0.1, 0.45), top + length))]
    y = -h * rng.uniform(0.38, 0.55)
    tilt = rng.uniform(-0.08, 0.08)
    if mark == "=":
        length = w * rng.uniform(0.6, 1.0)
        apart = h * rng.uniform(0.16, 0.26)
        return [
            _poly((0.0, y - apart / 2), (length, y - apart / 2 + tilt * length)),
            _poly((rng.uniform(-0.1, 0.1) * w, y + apart / 2), (length, y + apart / 2)),
        ]
    length = w * (rng.uniform(1.2, 2.6) if mark == "\u2014" else rng.uniform(0.45, 0.9))
    return [_poly((0.0, y), (length / 2, y + tilt * length / 2 + rng.normal(0, 0.3)), (length, y))]


def _security_ground(
    rng: np.random.Generator, size: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A fine pattern of light lines, as on cheque paper: its alpha (0..1) and colour."""
    width, height = size
    big = Image.new("L", (width * _SUPERSAMPLE, height * _SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    kind = int(rng.integers(3))  # 0 parallel diagonals, 1 wavy lines, 2 cross-hatch
    period = rng.uniform(2.2, 4.5) * _SUPERSAMPLE
    line = max(1, round(rng.uniform(0.5, 1.1) * _SUPERSAMPLE))
    span = (width + height) * _SUPERSAMPLE
    if kind == 1:
        wave, amp = rng.uniform(8.0, 30.0) * _SUPERSAMPLE, rng.uniform(0.5, 2.5) * _SUPERSAMPLE
        phase = rng.uniform(0, 2 * np.pi)
        x = np.arange(0, width * _SUPERSAMPLE + 8, 4, dtype=float)
        for y0 in np.arange(-amp - period, height * _SUPERSAMPLE + amp + period, period):
            y = y0 + amp * np.sin(2 * np.pi * x / wave + phase + y0 / (3 * period))
            draw.line(list(zip(x.tolist(), y.tolist(), strict=True)), fill=255, width=line)
    else:
        angles = [rng.uniform(25, 65) * rng.choice([-1, 1])]
        if kind == 2:
            angles.append(angles[0] - np.sign(angles[0]) * rng.uniform(70, 110))
        for angle in angles:
            dx, dy = np.cos(np.radians(angle)), np.sin(np.radians(angle))
            for c in np.arange(-span, span, period):
                # The line through (c * -dy, c * dx) along (dx, dy), long enough for the page.
                px, py = -dy * c + span / 2, dx * c
                draw.line(
                    (px - dx * span, py - dy * span, px + dx * span, py + dy * span),
                    fill=255,
                    width=line,
                )
    alpha = np.asarray(big.reduce(_SUPERSAMPLE), dtype=float) / 255.0 * rng.uniform(0.3, 0.6)
    tint = _TINTS[int(rng.integers(len(_TINTS)))]
    return alpha, tint


def number_image(text: str, **options: Any) -> Image.Image:
    """A handwritten number, such as the amount in figures on a cheque.

    The image of :func:`number_sample`, which takes the same arguments (`seed` and the
    keyword-only options).

    Examples
    --------
    >>> img = number_image("25.441", seed=0, texture=True)
    >>> img.mode, img.height > 48
    ('RGB', True)
    """
    return number_sample(text, **options)[0]


def number_sample(
    text: str,
    *,
    seed: int,
    height: int = 48,
    gap: tuple[float, float] = (-0.15, 0.40),
    touching: tuple[int, ...] = (),
    guide_line: bool = False,
    texture: bool = False,
    degrade: bool = False,
    styles: str = "common",
) -> tuple[Image.Image, list[tuple[float, float]]]:
    """A handwritten number, and where each digit's ink lies across it.

    The number is written in one hand: the pen, the ink, the slant, the proportions and the
    way of writing each digit (its variant, see :func:`digit_strokes`) are chosen once per
    image; each digit's size, wobble, small turn and place on the line vary a little.

    Parameters
    ----------
    text : str
        What is written: digits, with single separators ``.`` ``,`` ``'`` (see
        :data:`SEPARATORS`) between digits, then at most one end mark ``-``, ``=`` or a long
        dash ``\u2014`` (see :data:`END_MARKS`), e.g. ``"10.359"``, ``"1'222"`` or
        ``"280.000="``. Separators are drawn small and low (``'`` high); the number read
        from the image is the digits alone.
    seed : int
        Seed for ``numpy.random.default_rng``: the same arguments give a byte-identical
        image.
    height : int, optional
        Height in pixels of the ink of a typical digit (each varies by -10% to +4%).
        Default 48.
    gap : tuple of float, optional
        Range of the space between neighbouring digits' boxes, as a fraction of a digit's
        width: negative values let boxes overlap (a slanted 7 over a 1). The hand picks a
        spacing in the range, each pair varies round it. Ink never touches ink written
        before it, except in `touching`: what would come closer than 2 pixels is moved
        right. Default ``(-0.15, 0.40)``.
    touching : tuple of int, optional
        Digit pairs drawn touching: ``i`` makes the ``i``-th digit's ink (counting digits
        only, from 0) run into the next digit's. Default none.
    guide_line : bool, optional
        Draw a thin printed line across the whole width, under or through the bottom of
        the digits. Default False.
    texture : bool, optional
        Draw the ground as security paper: a fine pattern of light tinted lines (parallel,
        wavy or cross-hatched), much lighter than the ink. Default False.
    degrade : bool, optional
        Blur slightly, add noise and compress as a low-quality JPEG. Default False.
    styles : str, optional
        The shape set the hand's ways of writing are picked from, as
        :func:`render_digit`'s: ``"common"`` (the default) or ``"cheque"``.

    Returns
    -------
    image : PIL.Image.Image
        RGB, dark grey or blue ink on white or cream; about ``1.4 * height`` pixels high,
        as wide as the writing plus margins.
    spans : list of (float, float)
        For each digit, the first and last column (in pixels, fractional) of its ink.

    Raises
    ------
    ValueError
        If `text` is not of the form above, `height` is below 8, the `gap` range is not
        ordered or a `touching` index is not a pair of adjacent digits.

    Examples
    --------
    >>> img, spans = number_sample("25.441", seed=0)
    >>> len(spans)
    5
    """
    tokens = _parse_number(text)
    if isinstance(height, bool) or int(height) != height or height < 8:
        raise ValueError(f"height must be an integer >= 8, got {height!r}")
    _variants(0, styles)  # refuses an unknown shape set before anything is drawn
    lo_gap, hi_gap = (float(g) for g in gap)
    if not lo_gap <= hi_gap:
        raise ValueError(f"gap must be an ordered range (low, high), got {gap!r}")
    digit_at = [i for i, t in enumerate(tokens) if t.isdigit()]
    touch_before = set()  # token indices of digits drawn touching the digit before them
    for i in touching:
        if int(i) != i or not 0 <= i < len(digit_at) - 1 or digit_at[i + 1] != digit_at[i] + 1:
            raise ValueError(f"touching index {i!r} is not a pair of adjacent digits in {text!r}")
        touch_before.add(digit_at[i + 1])

    rng = np.random.default_rng(seed)
    h = float(height)
    # The hand: one pen, ink, slant, width, spacing and way of writing each digit.
    pen = max(h * rng.uniform(0.045, 0.078), _MIN_PEN_PX)
    ink = np.asarray(_INKS[int(rng.integers(len(_INKS)))]) + rng.integers(-8, 9, size=3)
    slant = rng.uniform(-0.08, 0.32)
    aspect = rng.uniform(0.5, 0.68)
    variant_pick = rng.random(10)
    spacing = rng.uniform(lo_gap, hi_gap)
    width = aspect * h  # a typical digit's width, the unit of the gaps

    rows = _Rows(top=-2.0 * h, rows=int(3.5 * h))
    reach = int(np.ceil(pen))
    placed: list[np.ndarray] = []  # strokes in page pixels, y = 0 on the baseline
    right_edge = np.full(rows.rows, -np.inf)  # of all the skeletons placed
    before = np.empty((0, 2))  # the skeletons placed, as points at most half a pixel apart
    box_right = 0.0
    digit_strokes_at: list[range] = []  # which of `placed` each digit's strokes are
    for t_index, token in enumerate(tokens):
        if token.isdigit():
            variants = _variants(int(token), styles)
            variant = variants[int(variant_pick[int(token)] * len(variants))]
            size = h * rng.uniform(0.9, 1.04)
            shaped = _shape(
                variant,
                aspect * rng.uniform(0.92, 1.08),
                slant + rng.uniform(-0.05, 0.05),
                np.radians(rng.uniform(-4.0, 4.0)),
                _smooth_field(rng),
                rng.normal(0.0, 0.5, size=(_MAX_STROKES, 2)),
                0.03,
            )
            allp = np.concatenate(shaped)
            lo, hi = allp.min(axis=0), allp.max(axis=0)
            k = (size - pen) / max(hi[1] - lo[1], 1e-6)
            lift = rng.normal(0.0, 0.025 * h) - pen / 2
            strokes = [(p - (lo[0], hi[1])) * k + (0.0, lift) for p in shaped]
            want = spacing + rng.normal(0.0, 0.07)
            want = float(np.clip(want, lo_gap, hi_gap)) * width
        else:
            strokes = _mark_strokes(token, rng, h, width, pen)
            lo_x = min(float(s[:, 0].min()) for s in strokes)
            strokes = [s - (lo_x, 0.0) for s in strokes]
            want = rng.uniform(0.15, 0.6 if token in END_MARKS else 0.3) * width
        dense = np.concatenate([_dense(s, 0.5) for s in strokes])
        left = rows.left(dense)
        if not placed:
            x0 = 0.0
        elif t_index in touch_before:
            # Skeletons closer than the pen where they come nearest: the inks run together.
            # Start clear of the rows round each row, so the digit does not nest in a
            # hollow of the one before (an 8 in the bowl of a 2), then close in.
            target = pen * rng.uniform(0.5, 0.85)
            x0 = np.max(_widen(right_edge, round(0.3 * h)) - left) + target
            for _ in range(20):
                d = _nearest(dense + (x0, 0.0), before)
                if d <= target + 0.25:
                    break
                x0 -= d - target  # moves each point by that much: never closer than target
        else:
            # Ink at least 2 pixels clear of all ink before, else as far as the gap says.
            need = pen + 2.0
            x0 = max(box_right + want, np.max(_widen(right_edge, reach) - left) + need)
            while (d := _nearest(dense + (x0, 0.0), before)) < need:
                x0 += need - d + 0.25
        strokes = [s + (x0, 0.0) for s in strokes]
        placed.extend(strokes)
        if token.isdigit():
            digit_strokes_at.append(range(len(placed) - len(strokes), len(placed)))
        before = np.concatenate([before, dense + (x0, 0.0)])
        right_edge = np.maximum(right_edge, rows.right(dense + (x0, 0.0)))
        box_right = max(box_right, max(float(s[:, 0].max()) for s in strokes))

    # The line of writing drifts a little up or down.
    drift = rng.uniform(-0.03, 0.03)
    placed = [s + np.column_stack([np.zeros(len(s)), drift * s[:, 0]]) for s in placed]
    allp = np.concatenate(placed)
    lo, hi = allp.min(axis=0) - pen / 2, allp.max(axis=0) + pen / 2
    margins = h * rng.uniform([0.1, 0.06, 0.1, 0.1], [0.5, 0.22, 0.5, 0.3])  # l, t, r, b
    guide_y = rng.uniform(-0.12, 0.14) * h + drift * (hi[0] + lo[0]) / 2
    guide_w = rng.uniform(0.8, 1.7)
    if guide_line:
        hi[1] = max(hi[1], guide_y + guide_w)
    origin = lo - margins[:2]
    size = (
        int(np.ceil(hi[0] - lo[0] + margins[0] + margins[2])),
        int(np.ceil(hi[1] - lo[1] + margins[1] + margins[3])),
    )
    strokes_big = [[(float(x), float(y)) for x, y in (s - origin) * _SUPERSAMPLE] for s in placed]
    ink_mask = _ink_on_paper(
        strokes_big, max(1, round(pen * _SUPERSAMPLE)), size, (255, 255, 255), (0, 0, 0)
    )
    ink_alpha = np.asarray(ink_mask.convert("L"), dtype=float) / 255.0
    # A ballpoint's ink is uneven: lighter here and there along the stroke.
    coarse = rng.uniform(0.72, 1.0, size=(max(2, size[1] // 6), max(2, size[0] // 6)))
    pressure = Image.fromarray((coarse * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    ink_alpha *= np.asarray(pressure, dtype=float) / 255.0 * rng.uniform(0.95, 1.0)

    paper = np.asarray(rng.uniform([242, 240, 232], [255, 255, 252]))
    page = np.broadcast_to(paper, (size[1], size[0], 3)).copy()
    guide_grey = rng.uniform(40, 120)
    # Texture and degradation draw from streams of their own: turning them on or off
    # leaves the writing as it is.
    if texture:
        alpha, tint = _security_ground(np.random.default_rng((seed, 1)), size)
        page += (np.asarray(tint) - page) * alpha[..., None]
    if guide_line:
        y = (guide_y - origin[1]) * _SUPERSAMPLE
        big = Image.new("L", (size[0] * _SUPERSAMPLE, size[1] * _SUPERSAMPLE), 0)
        ImageDraw.Draw(big).line(
            (0, y, size[0] * _SUPERSAMPLE, y), fill=255, width=round(guide_w * _SUPERSAMPLE)
        )
        line_alpha = np.asarray(big.reduce(_SUPERSAMPLE), dtype=float)[..., None] / 255.0
        page += (guide_grey - page) * line_alpha
    page += (ink - page) * ink_alpha[..., None]
    img = Image.fromarray(np.clip(np.rint(page), 0, 255).astype(np.uint8), "RGB")
    if degrade:
        img = _degrade(img, np.random.default_rng((seed, 2)))
    spans = []
    for at in digit_strokes_at:
        xs = np.concatenate([placed[i][:, 0] for i in at]) - origin[0]
        spans.append((float(xs.min() - pen / 2), float(xs.max() + pen / 2)))
    return img, spans


def _degrade(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Slight blur, sensor noise and a low-quality JPEG round trip."""
    import io

    from PIL import ImageFilter

    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    noisy = np.asarray(img, dtype=float) + rng.normal(
        0.0, rng.uniform(2.0, 6.0), (*img.size[::-1], 3)
    )
    img = Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(35, 80)))
    buf.seek(0)
    with Image.open(buf) as jpeg:
        return jpeg.convert("RGB")
