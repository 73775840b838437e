"""Render 32x32 NIST bitmaps back into images, as a scanner, a camera or a screen would.

The conversion's fixed-point tests and ``benchmarks/fixed_point.py`` use these renderings: a
bitmap that the NIST steps produced, drawn at any scale, with any margin, either polarity,
anti-aliased, JPEG-compressed or on uneven ground, must convert back to (nearly) its own
8x8 counts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["GROUNDS", "Rendering", "fixed_point", "nist_bitmaps", "render_bitmap"]

#: Paper colours: the ground's RGB at its brightest, and the ink's RGB.
_PAPER = {"flat": (255, 255, 255), "tinted": (236, 214, 150)}
_INK = (25, 25, 60)
#: The kinds of ground a bitmap can be rendered on.
GROUNDS = ("flat", "tinted", "gradient", "shadow")


@dataclass(frozen=True)
class Rendering:
    """How to draw a bitmap.

    Attributes
    ----------
    scale : int
        Pixels per bit (1..16).
    margin : float
        Blank space on each side, as a fraction of the drawn bitmap's side (0 = ink may
        touch every edge).
    invert : bool
        Light ink on a dark ground.
    resample : str
        ``"nearest"`` (hard edges) or ``"lanczos"``/``"bilinear"``: drawn at 4x the scale and
        reduced with that filter (anti-aliased edges).
    jpeg : int or None
        JPEG quality to round-trip through, or None.
    ground : str
        One of :data:`GROUNDS`: white, tinted paper, a light gradient, or a shadow over part
        of the page.
    """

    scale: int = 1
    margin: float = 0.0
    invert: bool = False
    resample: str = "nearest"
    jpeg: int | None = None
    ground: str = "flat"


def _ground(h: int, w: int, kind: str) -> np.ndarray:
    """Illumination 0..1 of the page: 1 everywhere for flat paper."""
    y, x = np.mgrid[0:h, 0:w]
    if kind == "gradient":  # light falling off across the page
        return (1.0 - 0.45 * (x + 0.5 * y) / (w + 0.5 * h)).astype(np.float32)
    if kind == "shadow":  # a soft-edged shadow over the lower left of the page
        edge = (x - 0.6 * w) + 0.4 * (h - y)
        return (1.0 - 0.4 / (1.0 + np.exp(edge / max(1.0, 0.03 * w)))).astype(np.float32)
    return np.ones((h, w), dtype=np.float32)


def render_bitmap(bitmap: np.ndarray, how: Rendering) -> Image.Image:
    """Draw a bool bitmap as an RGB image.

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool ``(h, w)``, True = ink.
    how : Rendering
        Scale, margin, polarity, filter, compression and ground.

    Returns
    -------
    PIL.Image.Image
        RGB image of side about ``(1 + 2 * margin) * scale * side``.
    """
    scale = int(how.scale)
    if how.resample == "nearest":
        cover = np.kron(bitmap.astype(np.float32), np.ones((scale, scale), np.float32))
    else:
        filt = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}
        big = np.kron(bitmap.astype(np.float32), np.ones((4 * scale, 4 * scale), np.float32))
        h, w = bitmap.shape
        small = Image.fromarray(big, mode="F").resize((w * scale, h * scale), filt[how.resample])
        cover = np.clip(np.asarray(small), 0.0, 1.0)
    pad = round(how.margin * max(cover.shape))
    cover = np.pad(cover, pad)
    h, w = cover.shape
    light = _ground(h, w, how.ground)[..., None]
    paper = np.array(_PAPER["tinted" if how.ground == "tinted" else "flat"], np.float32)
    ink = np.array(_INK, np.float32)
    if how.invert:
        paper, ink = 255.0 - paper, 255.0 - ink
    rgb = (paper + (ink - paper) * cover[..., None]) * light
    img = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mode="RGB")
    if how.jpeg is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=how.jpeg)
        buf.seek(0)
        img = Image.open(buf)
        img.load()
    return img


def nist_bitmaps(
    n: int, *, seed: int = 0, pens: tuple[float, float] = (0.04, 0.2)
) -> tuple[np.ndarray, np.ndarray]:
    """Bitmaps that the NIST steps made from synthetic glyphs, in many shapes and pen widths.

    Parameters
    ----------
    n : int
        How many; digit ``i % 10`` for the i-th.
    seed : int
        Seed of the glyphs' shapes and pen widths.
    pens : tuple of float
        Range of the pen width, as a fraction of the glyph's height (:func:`render_digit`).

    Returns
    -------
    bitmaps : numpy.ndarray
        bool ``(n, 32, 32)``.
    digits : numpy.ndarray
        int ``(n,)``: the digit each glyph was drawn as.
    """
    from digitcli.conversion.pipeline import bitmaps_from_images
    from digitcli.synth import render_digit

    rng = np.random.default_rng(seed)
    digits = np.arange(n) % 10
    glyphs = (
        render_digit(int(d), seed=seed * 100_003 + i, size=(64, 64), stroke=rng.uniform(*pens))
        for i, d in enumerate(digits)
    )
    bitmaps = bitmaps_from_images(glyphs)
    if not all(isinstance(b, np.ndarray) for b in bitmaps):
        raise ValueError("a synthetic glyph has no ink")  # the generator always draws some
    return np.array(bitmaps), digits


def fixed_point(bitmap: np.ndarray, *, tries: int = 8) -> np.ndarray | None:
    """Convert a bitmap drawn at one pixel per bit again until it no longer changes.

    Returns
    -------
    numpy.ndarray or None
        A bitmap that the conversion gives back exactly, or None if none was reached.
    """
    from digitcli.conversion.pipeline import bitmaps_from_images

    for _ in range(tries):
        [again] = bitmaps_from_images([render_bitmap(bitmap, Rendering())])
        if not isinstance(again, np.ndarray):
            return None
        if np.array_equal(again, bitmap):
            return bitmap
        bitmap = again
    return None
