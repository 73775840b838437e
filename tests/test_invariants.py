"""The conversion by what it is, not by scores on folders.

- NIST's output is a fixed point: a bitmap the NIST steps made, drawn again in any way a
  scanner, camera or screen would, converts back to what it was (exactly, when it is already
  a fixed point of every step; else to a grid the model reads the same).
- Ground removal never takes ink for ground, whatever the pen, the crop or the light.
- Any pen width reads the same; a tight crop's ink is never an edge or a band.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from digitcli import model as model_io
from digitcli.conversion import decode, nist, pipeline
from digitcli.conversion.ink import ink_masks, ink_strength
from digitcli.render import GROUNDS, Rendering, fixed_point, nist_bitmaps, render_bitmap
from digitcli.synth import pen_glyph, render_digit


@pytest.fixture(scope="module")
def shipped():
    return model_io.load(model_io.resolve_model_path(None))


@pytest.fixture(scope="module")
def nist_set():
    """100 NIST bitmaps of synthetic glyphs in many shapes and pen widths, and their counts."""
    bitmaps, digits = nist_bitmaps(100, seed=2)
    return bitmaps, pipeline.features_of(nist.pack(bitmaps))


def _read(model, images):
    features = pipeline.features_from_images(images)
    assert all(isinstance(f, np.ndarray) for f in features), features
    return model.predict_proba(np.array(features)).argmax(axis=1)


def test_fixed_points_come_back_exactly_at_any_integer_scale(nist_set):
    fixed = [fixed_point(b) for b in nist_set[0][:30]]
    assert all(f is not None for f in fixed)
    for f in fixed:
        # A fixed point of every step: ink in the top and bottom rows, a box of the width the
        # rule gives, on-pixels in NIST's band, the top and bottom rows' left edges aligned.
        rows, cols = np.flatnonzero(f.any(axis=1)), np.flatnonzero(f.any(axis=0))
        assert (rows[0], rows[-1]) == (0, 31)
        assert cols[-1] - cols[0] + 1 == nist.glyph_width(32, cols[-1] - cols[0] + 1)
        assert 256 <= f.sum() <= 412
        rows = nist.pack(f[None])
        np.testing.assert_array_equal(nist.normalise_strokes(rows), rows)
        np.testing.assert_array_equal(nist.remove_slant(rows), rows)
    for i, f in enumerate(fixed):
        for scale in (1, 2, 3, 5, 8, 16):
            how = Rendering(scale=scale, margin=(0.0, 0.2, 0.6)[i % 3], invert=bool(i % 2))
            np.testing.assert_array_equal(
                pipeline.bitmaps_from_images([render_bitmap(f, how)])[0], f, err_msg=f"{i} {how}"
            )


RENDERINGS = [
    *[{"scale": s} for s in (1, 2, 3, 7, 16)],
    {"margin": 0.0},
    {"margin": 0.6},
    {"invert": True},
    {"resample": "lanczos"},
    {"resample": "bilinear", "scale": 2},
    {"resample": "lanczos", "scale": 1},
    {"jpeg": 75},
    {"jpeg": 75, "scale": 1},
    *[{"ground": g} for g in GROUNDS[1:]],
    {"ground": "shadow", "invert": True, "jpeg": 75, "margin": 0.0},
]


@pytest.mark.parametrize(
    "kw", RENDERINGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items())
)
def test_nist_bitmaps_drawn_again_read_as_their_own_counts(kw, nist_set, shipped):
    bitmaps, counts = nist_set
    how = Rendering(**{"scale": 4, "margin": 0.1, **kw})
    own = shipped.predict_proba(counts).argmax(axis=1)
    again = _read(shipped, [render_bitmap(b, how) for b in bitmaps])
    assert np.mean(again == own) >= 0.99


def test_nist_bitmaps_drawn_again_give_nearly_their_counts(nist_set):
    bitmaps, counts = nist_set
    images = [render_bitmap(b, Rendering(scale=3, margin=0.2)) for b in bitmaps]
    l1 = np.abs(np.array(pipeline.features_from_images(images)) - counts).sum(axis=1)
    # Not zero: a deslanted bitmap is cropped, stretched and centred again. But far below
    # the distance between two digits (a few hundred).
    assert np.median(l1) <= 80 and np.percentile(l1, 90) <= 160


def _dilated(mask: np.ndarray, r: int) -> np.ndarray:
    padded = np.pad(mask, r)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


@pytest.mark.parametrize("ground", ["flat", "gradient", "shadow"])
@pytest.mark.parametrize("tight", [False, True], ids=["page", "tight"])
@pytest.mark.parametrize("pen", [0.05, 0.2, 0.35])
def test_ground_removal_never_removes_ink(pen, tight, ground):
    for digit in range(10):
        glyph = np.asarray(pen_glyph(digit, seed=digit, pen=pen, tight=tight).convert("L"))
        cover = 1.0 - glyph / 255.0  # how much of each pixel is ink
        h, w = cover.shape
        how = Rendering(ground=ground)
        light = np.asarray(render_bitmap(np.zeros((h, w), bool), how).convert("L")) / 255.0
        gray = (light * (1.0 - 0.85 * cover)).astype(np.float32)
        flat, _, blank, mask = ink_masks(ink_strength(gray, invert=False)[None])
        ink = cover >= 0.5
        assert not blank[0]
        # The strokes are kept, with at least half of the ink's contrast (0.85 * light) above
        # the ground (a ground estimate that climbed onto a stroke would leave less) ...
        assert mask[0][ink].mean() >= 0.98, (digit, pen)
        assert np.mean(flat[0][ink] >= 0.5 * 0.85 * light[ink]) >= 0.9, (digit, pen)
        # ... and on a page the shadow is gone: of the paper farther than 2 pixels from the
        # ink, at most 2% is taken for ink (beside the strokes, where the shadow's edge meets
        # them). A tight crop has too little paper beside a shadow's edge to tell it apart
        # from a stroke wider than the gap; there only the ink is asserted.
        paper = ~_dilated(cover > 0, 2)
        if not tight:
            assert (mask[0] & paper).sum() <= 0.02 * paper.sum(), (digit, pen)


@pytest.mark.parametrize("width", [0.2, 0.4, 0.6, 0.75])
@pytest.mark.parametrize("size", [28, 100, 600])
def test_a_stroke_as_wide_as_most_of_the_image_stays_whole(width, size):
    """A slab from top to bottom, up to three quarters of the image wide, on lit paper."""
    light = np.linspace(1.0, 0.8, size, dtype=np.float32)[None, :].repeat(size, axis=0)
    slab = np.zeros((size, size), dtype=bool)
    left = round(size * (1 - width) / 2)
    slab[:, left : size - left] = True
    gray = light * np.where(slab, 0.15, 1.0).astype(np.float32)
    _, _, blank, mask = ink_masks(ink_strength(gray, invert=False)[None])
    assert not blank[0]
    np.testing.assert_array_equal(mask[0], slab)


def test_any_pen_width_reads_the_same(shipped):
    n = 50
    same = []
    reference = _read(shipped, [pen_glyph(i % 10, seed=i, pen=0.1) for i in range(n)])
    for pen in (0.0, 0.05, 0.15, 0.2, 0.25, 0.3, 0.35):
        for tight in (False, True):
            got = _read(
                shipped, [pen_glyph(i % 10, seed=i, pen=pen, tight=tight) for i in range(n)]
            )
            same.append(got == reference)
    assert np.mean(same) >= 0.98


def _edge_clutter_free_mask(img: Image.Image) -> np.ndarray:
    gray = decode.scaled(decode.gray_pixels(img))
    return ink_masks(ink_strength(gray)[None])[3][0]


@pytest.mark.parametrize("digit", range(10))
def test_tight_crop_keeps_every_piece_of_the_digit(digit):
    glyph = pen_glyph(digit, seed=40 + digit, pen=0.15, tight=True)
    ink = np.asarray(glyph.convert("L")) < 128
    # Ink touches every side, and a piece cut off the digit's body stays.
    broken = ink.copy()
    h = broken.shape[0]
    broken[h // 2 - 1 : h // 2 + 1] = False  # cut across the middle: two pieces
    for mask in (ink, broken):
        img = Image.fromarray(np.where(mask, 20, 250).astype(np.uint8))
        kept = _edge_clutter_free_mask(img)
        assert (kept == mask).mean() >= 0.99 and kept[mask].mean() >= 0.99


@pytest.mark.parametrize("resample", [Image.Resampling.NEAREST, Image.Resampling.BILINEAR])
def test_small_scans_enlarged_read_as_the_scan(shipped, resample):
    """A 16x16 scan filled by its digit, enlarged: ink on every side is never an edge."""
    scans = [
        render_digit(i % 10, seed=60 + i, size=(16, 16), margin=0.0, stroke=0.12) for i in range(40)
    ]
    direct = _read(shipped, scans)
    enlarged = _read(shipped, [s.resize((128, 128), resample) for s in scans])
    assert np.mean(direct == enlarged) >= 0.95
    for scan in scans[:10]:
        big = scan.resize((128, 128), resample)
        strength = ink_strength(decode.scaled(decode.gray_pixels(big)))[None]
        _, thresholds, _, mask = ink_masks(strength)
        # The ink at the same threshold with no ground removed and nothing cleaned away.
        ink = strength[0] > thresholds[0]
        assert mask[0][ink].mean() >= 0.98
