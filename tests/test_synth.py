import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from digitcli import synth
from digitcli.conversion.pieces import piece_table
from digitcli.conversion.pipeline import features_from_images
from digitcli.synth import cut_glyph, digit_strokes, number_image, render_digit


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


# --- number_image: handwritten numbers ------------------------------------------------


def _ink_pieces(img):
    """Pieces of the ink (darker than any ground or guide line) as (top, bottom, left, right)."""
    table = piece_table((np.asarray(img.convert("L")) < 150)[None])
    return table.top, table.bottom, table.left, table.right


def test_number_image_is_deterministic_and_seeds_differ():
    kw = {"texture": True, "guide_line": True, "degrade": True, "touching": (2,)}
    a = number_image("10.359=", seed=4, **kw)
    assert a.tobytes() == number_image("10.359=", seed=4, **kw).tobytes()
    assert a.size == number_image("10.359=", seed=4, **kw).size
    b = number_image("10.359=", seed=5, **kw)
    assert a.size != b.size or a.tobytes() != b.tobytes()


@pytest.mark.parametrize("seed", [0, 1])
def test_number_image_size_grows_with_the_digits(seed):
    h = 40
    widths = []
    for n in range(3, 8):
        img = number_image("3064217"[:n], seed=seed, height=h)
        assert img.mode == "RGB"
        assert 1.1 * h <= img.height <= 2.0 * h
        assert 0.45 * n * h <= img.width <= (1.3 * n + 1.0) * h
        widths.append(img.width)
    # one hand per seed: a longer number is the shorter one with a digit more
    assert widths == sorted(widths) and len(set(widths)) == 5


@pytest.mark.parametrize("seed", [0, 3, 7])
@pytest.mark.parametrize("text", ["12.345", "98,70", "1'234"])
def test_separators_are_small_extra_pieces_and_digits_stay_digit_sized(text, seed):
    h = 40
    top, bottom, left, right = _ink_pieces(number_image(text, seed=seed, height=h))
    tall = bottom - top >= 0.6 * h
    assert tall.sum() == sum(c.isdigit() for c in text)  # each digit one piece, full height
    assert len(top) == tall.sum() + 1  # and one piece more: the separator
    sep = np.flatnonzero(~tall)[0]
    assert bottom[sep] - top[sep] < 0.4 * h and right[sep] - left[sep] < 0.4 * h
    digits_top, digits_bottom = top[tall].mean(), bottom[tall].mean()
    middle = (digits_top + digits_bottom) / 2
    if "'" in text:
        assert bottom[sep] < middle  # high
    else:
        assert top[sep] > middle  # low
    # it sits between the digits it separates, in reading order
    order = np.argsort(left + right)  # by centre: a slanted digit may overhang the separator
    assert list(order).index(sep) == text.index(next(c for c in text if not c.isdigit()))


@pytest.mark.parametrize("seed", range(4))
def test_digits_touch_only_where_asked(seed):
    h = 36
    tall = [
        int(((b - t) >= 0.5 * h).sum())
        for t, b, _, _ in (
            _ink_pieces(number_image("2250", seed=seed, height=h, touching=touching))
            for touching in [(), (0,), (1, 2)]
        )
    ]
    assert tall == [4, 3, 2]


def test_touching_must_be_adjacent_digits():
    with pytest.raises(ValueError, match="touching"):
        number_image("12.34", seed=0, touching=(1,))  # a separator between them
    with pytest.raises(ValueError, match="touching"):
        number_image("123", seed=0, touching=(2,))


def test_number_image_cheque_styles():
    common = [np.asarray(number_image("1247", seed=s)) for s in range(6)]
    cheque = [np.asarray(number_image("1247", seed=s, styles="cheque")) for s in range(6)]
    # Same hands, but some pick a shape only the cheque set has.
    assert any(
        a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(common, cheque, strict=True)
    )
    again = np.asarray(number_image("1247", seed=3, styles="cheque"))
    np.testing.assert_array_equal(again, cheque[3])
    with pytest.raises(ValueError, match="styles"):
        number_image("12", seed=0, styles="fancy")


@pytest.mark.parametrize("text", ["", "12..3", ".12", "12.", "1a2", "12-3", "=12"])
def test_number_image_rejects_malformed_text(text):
    with pytest.raises(ValueError, match="text must be"):
        number_image(text, seed=0)


@pytest.mark.parametrize("seed", [0, 2])
def test_guide_line_spans_nearly_the_full_width_near_the_baseline(seed):
    h = 40
    plain = np.asarray(number_image("2250", seed=seed, height=h).convert("L"), dtype=int)
    lined = np.asarray(
        number_image("2250", seed=seed, height=h, guide_line=True).convert("L"), dtype=int
    )
    if lined.shape != plain.shape:  # a line under the writing makes the image taller
        assert lined.shape[1] == plain.shape[1] and lined.shape[0] > plain.shape[0]
        plain = np.pad(plain, ((0, lined.shape[0] - plain.shape[0]), (0, 0)), mode="edge")
    darker = (lined < plain - 40).mean(axis=1)  # share of each row the line darkens
    row = int(np.argmax(darker))
    assert darker[row] >= 0.9
    ink_rows = np.flatnonzero((plain < 150).any(axis=1))
    assert abs(row - ink_rows.max()) <= 0.2 * h  # under or through the bottom of the digits
    assert (np.delete(darker, range(row - 2, row + 3)) < 0.05).all()  # and nothing else


def test_texture_is_lighter_than_the_ink_and_leaves_the_writing_alone():
    plain = np.asarray(number_image("1222", seed=9).convert("L"), dtype=int)
    textured = np.asarray(number_image("1222", seed=9, texture=True).convert("L"), dtype=int)
    ink = plain < 100
    ground = plain > 230
    assert ink.any() and ground.mean() > 0.5
    # a fine pattern: many ground pixels change, none gets as dark as ink
    assert (textured[ground] < plain[ground] - 8).mean() > 0.2
    assert textured[ground].min() > 150
    assert (textured[ink] <= plain[ink] + 10).all()


def _make_strings():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "make_strings.py"
    spec = importlib.util.spec_from_file_location("make_strings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_strings_writes_labels_and_conditions(tmp_path):
    make_strings = _make_strings()
    make_strings.main([str(tmp_path / "set"), "--n", "5", "--seed", "1"])
    with open(tmp_path / "set" / "labels.csv", newline="", encoding="utf-8") as f:
        labels = list(csv.reader(f))
    with open(tmp_path / "set" / "conditions.csv", newline="", encoding="utf-8") as f:
        conditions = list(csv.DictReader(f))
    assert labels[0] == ["file", "number"]
    assert len(labels) == 6 and len(conditions) == 5
    for (file, number), cond in zip(labels[1:], conditions, strict=True):
        assert cond["file"] == file and (tmp_path / "set" / file).is_file()
        assert number.isdigit() and 3 <= len(number) <= 7
        assert number == "".join(c for c in cond["text"] if c.isdigit())  # separators dropped
        assert int(cond["length"]) == len(number)
    # the same rows draw the same image
    first = (tmp_path / "set" / conditions[0]["file"]).read_bytes()
    again = tmp_path / "again.png"
    make_strings.draw(conditions[0]).save(again)
    assert again.read_bytes() == first


def test_make_strings_mixes_conditions_and_keeps_leading_zeros():
    make_strings = _make_strings()
    rng = np.random.default_rng(0)
    rows = [make_strings.sample(rng, i) for i in range(400)]
    assert {len(r["number"]) for r in rows} == {3, 4, 5, 6, 7}
    assert any(r["number"].startswith("0") for r in rows)
    for key in ("touching", "separators", "end_mark", "guide_line", "texture", "degrade"):
        share = np.mean([bool(r[key]) for r in rows])
        assert 0.1 < share < 0.6, key
    gaps = [r["gap"] for r in rows]
    assert min(gaps) < -0.1 and max(gaps) > 0.35


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
