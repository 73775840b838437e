import numpy as np
import pytest

from digitcli import synth
from digitcli.conversion.pipeline import features_from_images
from digitcli.synth import cut_glyph, digit_strokes, render_digit


@pytest.mark.parametrize("digit", range(10))
def test_every_variant_is_a_distinct_drawing_in_the_unit_box(digit):
    variants = []
    for v in range(8):
        strokes = digit_strokes(digit, variant=v)
        key = repr(strokes)
        if variants and key == variants[0]:
            break  # wrapped round: variant v is variant 0 again
        variants.append(key)
        points = np.concatenate([np.asarray(s) for s in strokes])
        assert points.min() >= -0.01 and points.max() <= 1.01
        # the drawing spans its box: no variant is a squashed fragment
        assert np.ptp(points[:, 1]) >= 0.9 and np.ptp(points[:, 0]) >= 0.15
    assert len(variants) == len(set(variants))
    assert (len(variants) > 1) == (digit not in (0, 5, 8))


def test_render_is_deterministic_and_seeds_differ():
    a = np.asarray(render_digit(2, seed=5))
    assert np.array_equal(a, np.asarray(render_digit(2, seed=5)))
    assert not np.array_equal(a, np.asarray(render_digit(2, seed=6)))


def _cheque_only(digit):
    """Indices (in the "cheque" set) of the shapes that only the "cheque" set has."""
    common = len(synth._VARIANTS[digit])
    return range(common, common + len(synth._CHEQUE_VARIANTS[digit]))


@pytest.mark.parametrize("digit", range(10))
def test_cheque_variants_are_distinct_drawings_in_the_unit_box(digit):
    n = len(synth._VARIANTS[digit]) + len(synth._CHEQUE_VARIANTS[digit])
    drawings = [repr(digit_strokes(digit, variant=v, styles="cheque")) for v in range(n)]
    assert len(set(drawings)) == n
    # the common shapes come first, as the "common" set numbers them
    assert drawings[: len(synth._VARIANTS[digit])] == [
        repr(digit_strokes(digit, variant=v)) for v in range(len(synth._VARIANTS[digit]))
    ]
    for v in _cheque_only(digit):
        points = np.concatenate(
            [np.asarray(s) for s in digit_strokes(digit, variant=v, styles="cheque")]
        )
        assert points.min() >= -0.01 and points.max() <= 1.01
        assert np.ptp(points[:, 1]) >= 0.9 and np.ptp(points[:, 0]) >= 0.15


def test_the_cheque_set_adds_the_shapes_of_handwritten_amounts():
    for digit in (1, 2, 4, 7):
        assert len(synth._CHEQUE_VARIANTS[digit]) >= 2
    with pytest.raises(ValueError, match="styles"):
        render_digit(3, styles="gothic")


def test_styles_and_variant_change_only_the_shape():
    """The default draws the common set as before; a chosen variant keeps the other draws."""
    a = np.asarray(render_digit(7, seed=11))
    assert np.array_equal(a, np.asarray(render_digit(7, seed=11, styles="common")))
    rng = np.random.default_rng(11)
    chosen = int(rng.random() * len(synth._VARIANTS[7]))
    assert np.array_equal(a, np.asarray(render_digit(7, seed=11, variant=chosen)))
    crossed = render_digit(7, seed=11, styles="cheque", variant=_cheque_only(7)[0])
    assert not np.array_equal(a, np.asarray(crossed))


def test_cut_glyph_is_deterministic_small_and_grey():
    a = cut_glyph(1, seed=5)
    assert a.mode == "L" and synth.CUT_HEIGHTS[0] <= a.height < synth.CUT_HEIGHTS[1]
    assert a.width == a.height
    assert np.array_equal(np.asarray(a), np.asarray(cut_glyph(1, seed=5)))
    assert not np.array_equal(np.asarray(a), np.asarray(cut_glyph(1, seed=6)))
    assert np.array_equal(
        np.asarray(cut_glyph(7, seed=5, variant=3)), np.asarray(cut_glyph(7, seed=5, variant=3))
    )


@pytest.mark.parametrize(
    "digit, variants",
    [(7, _cheque_only(7)), (1, _cheque_only(1)), (4, _cheque_only(4))],
    ids=["crossed 7", "continental 1", "open 4"],
)
def test_shipped_model_reads_cheque_shapes(shipped_model, digit, variants):
    """Crossed 7s, continental 1s and open 4s, large and cut small, are read as themselves."""
    images = [
        img
        for v in variants
        for seed in range(10)
        for img in (
            render_digit(digit, seed=seed, size=(64, 64), styles="cheque", variant=v),
            cut_glyph(digit, seed=seed, variant=v),
        )
    ]
    features = np.vstack(features_from_images(images))
    read, _ = shipped_model.predict(features)
    assert (read == digit).mean() >= 0.95, np.bincount(read, minlength=10)
