from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from digitcli.conversion import decode, nist, pieces, pipeline
from digitcli.conversion import ink as ink_stage
from digitcli.errors import ImageError
from digitcli.synth import render_digit

# The conversion takes stacks; these give one image's result, or raise its error.


def _one(results):
    [out] = results
    if isinstance(out, ImageError):
        raise out
    return out


def _path_features(path, **kw):
    return _one(pipeline.features_from_paths([str(path)], **kw))


def _features(img: Image.Image, **kw) -> np.ndarray:
    return _one(pipeline.features_from_images([img], **kw))


def _flatten(a):
    return ink_stage.ink_masks(a[None].astype(np.float32))[0][0]


def _threshold(a):
    thresholds, blank = ink_stage.ink_thresholds(a[None])
    if blank[0]:
        raise ImageError("no digit found")
    return thresholds[0]


def _specks(mask):
    return pieces.remove_specks(mask[None])[0]


def _packed(step, bitmaps):
    """A step on packed bitmaps, on bool bitmaps ``(32, 32)`` or ``(n, 32, 32)``."""
    stack = bitmaps[None] if bitmaps.ndim == 2 else bitmaps
    out = nist.unpack(step(nist.pack(stack)))
    return out[0] if bitmaps.ndim == 2 else out


def _counts(bitmaps):
    stack = bitmaps[None] if bitmaps.ndim == 2 else bitmaps
    out = nist.block_counts(nist.pack(stack))
    return out[0] if bitmaps.ndim == 2 else out


def _areas(mask):
    return sorted(pieces.piece_table(mask[None]).size.tolist())


def test_ink_threshold_splits_two_levels():
    values = np.concatenate([np.full(100, 0.1), np.full(30, 0.8)])
    t = _threshold(values.reshape(1, -1))
    assert 0.1 < t < 0.8


def test_ink_strength_detects_polarity():
    dark_on_light = np.ones((10, 10))
    dark_on_light[3:7, 4:6] = 0.0
    light_on_dark = 1.0 - dark_on_light
    for gray in (dark_on_light, light_on_dark):
        ink = ink_stage.ink_strength(gray)
        assert ink[5, 5] == 1.0 and ink[0, 0] == 0.0
    # forced polarity is obeyed even when it is wrong
    assert ink_stage.ink_strength(dark_on_light, invert=True)[5, 5] == 0.0


def test_flatten_background_removes_shadows_keeps_strokes():
    h, w = 120, 100
    ground = np.linspace(0.0, 0.5, w)[None, :].repeat(h, axis=0)  # a shadow getting darker
    ink = ground.copy()
    ink[20:100, 48:51] = 0.9  # a pen stroke
    flat = _flatten(ink)
    assert flat[60, 49] > 0.35
    assert np.percentile(np.delete(flat, np.s_[44:56], axis=1), 99) < 0.1


def test_ink_threshold_refuses_blank_and_separates_strokes():
    with pytest.raises(ImageError, match="no digit found"):
        _threshold(np.zeros((20, 20)))
    with pytest.raises(ImageError, match="no digit found"):
        _threshold(np.random.default_rng(0).random((20, 20)) * 0.05)
    ink = np.zeros((20, 20))
    ink[5:15, 9:11] = 0.9
    assert 0.0 < _threshold(ink) < 0.9


def test_components_are_8_connected():
    mask = np.zeros((6, 8), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # a diagonal: one piece
    mask[4:6, 5:8] = True  # a block: another
    assert _areas(mask) == [3, 6]


def test_remove_specks_drops_dust_and_edge_clutter():
    mask = np.zeros((40, 40), dtype=bool)
    mask[8:32, 18:22] = True  # the digit
    mask[3, 3] = True  # dust
    mask[0:2, :] = True  # a table edge along the top
    cleaned = _specks(mask)
    assert cleaned[8:32, 18:22].all()
    assert not cleaned[3, 3] and not cleaned[0].any()
    # a digit that touches the edge is kept when it is all there is
    alone = np.zeros((40, 40), dtype=bool)
    alone[0:40, 18:22] = True
    np.testing.assert_array_equal(_specks(alone), alone)


def test_remove_specks_drops_a_band_bigger_than_the_digit():
    """The dark edge of a table or page along a side outweighs a thin 1 and is dropped."""
    mask = np.zeros((100, 100), dtype=bool)
    mask[0:12, :] = True  # 1,200 pixels of page edge along the top
    mask[12:16, 30:100] = True
    mask[40:80, 48:51] = True  # a 1: 120 pixels, a tenth of the band
    cleaned = _specks(mask)
    expected = np.zeros_like(mask)
    expected[40:80, 48:51] = True
    np.testing.assert_array_equal(cleaned, expected)
    # a band down a side is judged the same way
    np.testing.assert_array_equal(_specks(mask.T), expected.T)
    # ... but a piece clear of the edges that is only a speck beside it is not the digit
    seven = np.zeros((40, 30), dtype=bool)
    seven[0:4, :] = True  # a tightly cropped 7: its bar runs along the whole top
    for r in range(4, 40):
        seven[r, max(0, 26 - (r * 26) // 40) : max(4, 30 - (r * 26) // 40)] = True
    speck = seven.copy()
    speck[28:31, 24:27] = True  # a pen dot: 9 pixels, 3% of the ink
    np.testing.assert_array_equal(_specks(speck), seven)
    # a digit cut by the top and bottom of the frame is no band to a dot beside it
    cut = np.zeros((40, 100), dtype=bool)
    cut[:, 46:54] = True
    dotted = cut.copy()
    dotted[20:23, 70:73] = True
    np.testing.assert_array_equal(_specks(dotted), cut)


def test_a_pen_dot_beside_a_tightly_cropped_digit_is_dust(shipped_model):
    for digit in range(10):
        img = render_digit(digit, seed=40 + digit, size=(64, 64)).convert("L")
        a = np.array(img.crop(img.point(lambda v: 255 - v).getbbox()))
        dotted = a.copy()
        paper = a > 200
        clear = [
            (r, c)
            for r in range(2, a.shape[0] - 4)
            for c in range(2, a.shape[1] - 4)
            if paper[r - 1 : r + 3, c - 1 : c + 3].all()
        ]
        r, c = clear[len(clear) // 2]  # paper well clear of the strokes and the edges
        dotted[r : r + 2, c : c + 2] = 0  # 4 pixels: 1-2% of the ink
        features = _features(Image.fromarray(dotted))
        assert features.sum() > 150, digit  # the digit, not the dot, made the 32x32 bitmap
        assert shipped_model.predict(features[None])[0][0] == digit


def test_a_page_edge_in_a_photo_does_not_change_the_digit():
    clean = render_digit(1, seed=3, size=(200, 200), digit_height=0.3)
    edged = np.array(clean)
    edged[:18] = (60, 55, 50)  # the table beyond the top of the page
    edged[18:22, 60:] = (90, 85, 80)
    # the band's ink moves the threshold a little, so a block may differ by a pixel or two
    difference = _features(Image.fromarray(edged)) - _features(clean)
    assert np.abs(difference).max() <= 2, difference.reshape(8, 8)


def test_ink_boxes():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    mask[7, 4] = True
    stack = np.stack([mask, mask[::-1, ::-1]])
    boxes = np.stack(pieces.ink_boxes(stack), axis=1).tolist()
    assert boxes == [[2, 8, 3, 9], [2, 8, 3, 9]]


def test_glyph_width_stretches_to_20_but_not_a_stick():
    assert nist.glyph_width(100, 60) == 20
    assert nist.glyph_width(100, 100) == 20
    assert nist.glyph_width(100, 10) == round(32 * 0.1 * nist.MAX_WIDEN)


@pytest.mark.parametrize("size", [(12, 8), (300, 180)], ids=["enlarged", "reduced"])
def test_normalise_bitmap_fills_the_20x32_box_centred(size):
    mask = np.ones(size, dtype=bool)
    out = nist.normalise_bitmap(mask[None].astype(float), mask[None], 0.5)[0]
    assert out.shape == (32, 32)
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert (rows[0], rows[-1]) == (0, 31)  # ink in top and bottom rows
    assert (cols[0], cols[-1]) == (6, 25)  # 20 wide, centred


def test_normalise_bitmap_keeps_thin_strokes_when_reducing():
    mask = np.zeros((320, 200), dtype=bool)
    mask[:, 90:93] = True  # a 3-pixel pen line, reduced 10x: 30% of a pixel
    mask[0, 0] = mask[-1, -1] = True  # stretch the box
    out = nist.normalise_bitmap(mask[None].astype(float), mask[None], 0.5)[0]
    assert out[:, 15].sum() >= 30


@pytest.mark.parametrize(
    ("on", "expected"),
    [(600, "thinner"), (450, "thinner"), (300, "same"), (200, "thicker"), (80, "thicker")],
)
def test_normalise_strokes_by_on_pixel_count(on, expected):
    bitmap = np.zeros((32, 32), dtype=bool)
    rows, width = divmod(on, 20)
    bitmap[:rows, 6:26] = True
    bitmap[rows, 6 : 6 + width] = True
    out = _packed(nist.normalise_strokes, bitmap)
    if expected == "same":
        np.testing.assert_array_equal(out, bitmap)
    elif expected == "thinner":
        assert out.sum() < on and not (out & ~bitmap).any()
    else:
        assert out.sum() > on and not (bitmap & ~out).any()


def test_normalise_strokes_counts_match_nist_bands():
    bar = np.zeros((32, 32), dtype=bool)
    bar[:, 10:28] = True  # 576 on-pixels: eroded twice
    # 2 columns off each side; the top and bottom rows stay (the box edge counts as ink,
    # as Digits always has ink in its top and bottom rows)
    assert _packed(nist.normalise_strokes, bar).sum() == 32 * 14


def test_remove_slant_lines_up_left_edges():
    bitmap = np.zeros((32, 32), dtype=bool)
    for y in range(32):
        x = 20 - y // 3  # leaning right: top further right than bottom
        bitmap[y, x : x + 4] = True
    out = _packed(nist.remove_slant, bitmap)
    left = [int(np.flatnonzero(out[y])[0]) for y in (0, 31)]
    assert left[0] == left[1]
    assert out.sum() == bitmap.sum()


def test_block_counts_sums_4x4_blocks():
    bitmap = np.zeros((32, 32), dtype=bool)
    bitmap[:4, :4] = True
    bitmap[4, 4] = True
    counts = _counts(bitmap)
    assert counts.shape == (8, 8)
    assert counts[0, 0] == 16 and counts[1, 1] == 1 and counts.sum() == 17


def test_features_are_digits_format():
    f = _features(render_digit(5, size=(64, 64)))
    assert f.shape == (64,)
    assert f.min() >= 0 and f.max() <= 16
    grid = f.reshape(8, 8)
    assert grid[0].sum() > 0 and grid[-1].sum() > 0  # ink in top and bottom rows, like Digits


BASE = render_digit(2, seed=4, size=(64, 64))


@pytest.mark.parametrize(
    "convert",
    [
        lambda im: im.convert("L"),
        lambda im: im.convert("1"),
        lambda im: im.convert("P"),
        lambda im: im.convert("LA"),
        lambda im: im.convert("RGBA"),
        lambda im: im.convert("CMYK"),
        lambda im: Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257),
        lambda im: Image.eval(im.convert("L"), lambda v: 255 - v),  # white on black
    ],
    ids=["L", "1", "P", "LA", "RGBA", "CMYK", "I;16", "inverted"],
)
def test_modes_give_the_same_features(convert):
    reference = _features(BASE.convert("L"))
    got = _features(convert(BASE))
    assert np.abs(got - reference).sum() <= 64, got.reshape(8, 8)


def test_ink_only_in_alpha_channel():
    alpha = Image.eval(BASE.convert("L"), lambda v: 255 - v)
    black = Image.new("RGBA", BASE.size, (0, 0, 0, 0))
    black.putalpha(alpha)
    white = Image.new("RGBA", BASE.size, (255, 255, 255, 0))
    white.putalpha(alpha)
    reference = _features(BASE.convert("L"))
    for img in (black, white):
        assert np.abs(_features(img) - reference).sum() <= 64


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"])
def test_formats_read_from_files(tmp_path, fmt):
    path = tmp_path / f"d.{fmt.lower()}"
    BASE.save(path, format=fmt)
    f = _path_features(path)
    assert np.abs(f - _features(BASE)).sum() <= 96


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    upright = render_digit(7, seed=1, size=(48, 64))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a sideways phone photo
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / f"phone.{fmt.lower()}"
    stored.save(path, format=fmt, exif=exif, quality=95)
    with_exif = _path_features(path)
    assert (
        np.abs(with_exif - _features(upright)).sum() < np.abs(with_exif - _features(stored)).sum()
    )


def test_big_photo_is_reduced_before_conversion(tmp_path):
    img = render_digit(4, size=(3000, 2000), digit_height=0.3)
    path = tmp_path / "big.jpg"
    img.save(path, quality=85)
    opened = decode.open_image(path)
    assert max(opened.size) <= decode.WORK_SIZE
    assert _path_features(path).sum() > 0


def test_blank_images_are_not_guessed(tmp_path):
    for colour in (255, 0, 128):
        path = tmp_path / f"blank{colour}.png"
        Image.new("L", (50, 50), colour).save(path)
        with pytest.raises(ImageError, match="no digit found"):
            _path_features(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "cannot identify"),
        (b"this is text, not a picture\n", "cannot identify"),
        ((100_000, 100_000), "too large"),
        ((20_000, 20_000), "too large: 400000000 pixels"),
    ],
    ids=["empty", "text", "bomb-over-pillow-limit", "bomb-over-our-limit"],
)
def test_unreadable_files_raise_image_error(tmp_path, png_header, content, match):
    path = tmp_path / "bad.png"
    path.write_bytes(png_header(*content) if isinstance(content, tuple) else content)
    with pytest.raises(ImageError, match=match):
        _path_features(path)


def test_truncated_png(tmp_path):
    path = tmp_path / "t.png"
    render_digit(1, size=(200, 200)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageError, match="truncated|cannot"):
        _path_features(path)


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(ImageError, match="folder"):
        _path_features(tmp_path)
    with pytest.raises(ImageError, match="not found"):
        _path_features(tmp_path / "missing.png")


def test_synthetic_digits_are_mostly_read_right(shipped_model):
    X = np.vstack(
        [_features(render_digit(d, seed=s, size=(64, 64))) for d in range(10) for s in range(5)]
    )
    y = np.repeat(np.arange(10), 5)
    accuracy = (shipped_model.predict(X)[0] == y).mean()
    assert accuracy >= 0.96  # the whole chain reads them: 50 of 50 with the shipped model


def test_conversion_statistics_match_load_digits(digits):
    """Synthetic handwriting through the conversion looks like Digits to the model."""
    X_digits, _ = digits
    X = np.vstack(
        [_features(render_digit(d, seed=s, size=(64, 64))) for d in range(10) for s in range(20)]
    )
    grids = X.reshape(-1, 8, 8)
    assert (grids[:, 0].sum(axis=1) > 0).all() and (grids[:, 7].sum(axis=1) > 0).all()
    col_means = grids.mean(axis=(0, 1))
    digits_means = X_digits.reshape(-1, 8, 8).mean(axis=(0, 1))
    assert np.abs(col_means - digits_means).max() < 2.5, col_means.round(1)
    assert col_means[0] < 0.5 and col_means[7] < 0.5
    on = X.sum(axis=1)
    assert ((on >= 256) & (on <= 412)).mean() >= 0.8, np.percentile(on, [5, 50, 95])


def _photo(digit: int, seed: int, size=(900, 1200), digit_height=0.3, **kw) -> Image.Image:
    """A digit on tinted paper with a shadow, JPEG-like noise and dust: a phone photo."""
    img = render_digit(
        digit,
        seed=seed,
        size=size,
        digit_height=digit_height,
        ink=(40, 40, 90),
        paper=(225, 215, 170),
        **kw,
    )
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape[:2]
    shadow = np.clip(np.linspace(0.55, 1.1, w)[None, :] * np.linspace(1.05, 0.8, h)[:, None], 0, 1)
    a = a * shadow[..., None]
    rng = np.random.default_rng(seed)
    a += rng.normal(0, 6, a.shape)
    for y, x in rng.integers(0, min(h, w), size=(12, 2)):  # dust specks
        a[y : y + 2, x : x + 2] = 60
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("digit", range(10))
def test_photo_conditions_give_the_clean_reading(tmp_path, shipped_model, digit):
    clean = _features(render_digit(digit, seed=digit, size=(300, 400), digit_height=0.9))
    path = tmp_path / "photo.jpg"
    _photo(digit, seed=digit).save(path, quality=70)
    photo = _path_features(path)
    assert np.abs(photo - clean).sum() < 200, photo.reshape(8, 8)
    assert shipped_model.predict(photo)[0][0] == shipped_model.predict(clean)[0][0]


def test_thin_pen_on_a_big_scan_survives(tmp_path):
    img = render_digit(4, seed=2, size=(1600, 2000), stroke=0.01, digit_height=0.6)
    f = _features(img)
    assert f.sum() >= 200  # the strokes are there, normalised to Digits' thickness


def test_animated_gif_uses_the_first_frame(tmp_path):
    first = render_digit(0, seed=1, size=(64, 64)).convert("L")
    second = render_digit(1, seed=1, size=(64, 64)).convert("L")
    path = tmp_path / "anim.gif"
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    np.testing.assert_array_equal(_path_features(path), _features(first))


def test_sixteen_bit_png_file(tmp_path):
    a = np.asarray(BASE.convert("L"), dtype=np.uint16) * 257
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    assert np.abs(_path_features(path) - _features(BASE)).sum() <= 64


def test_cmyk_jpeg_and_palette_transparency_files(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    BASE.convert("CMYK").save(cmyk, quality=95)
    assert np.abs(_path_features(cmyk) - _features(BASE)).sum() <= 96
    # palette image whose paper is the transparent colour
    pal = BASE.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    paper = pal.getpixel((0, 0))
    path = tmp_path / "pal.png"
    pal.save(path, transparency=paper)
    assert np.abs(_path_features(path) - _features(BASE)).sum() <= 96


def test_forced_polarity():
    inverted = Image.eval(BASE.convert("L"), lambda v: 255 - v)
    auto = _features(inverted)
    np.testing.assert_array_equal(_features(inverted, invert=True), auto)
    try:
        wrong = _features(inverted, invert=False)  # read as dark ink on light paper
    except ImageError:
        return  # refusing it is right too
    assert np.abs(wrong - auto).sum() > 100


@pytest.mark.parametrize(
    ("size_in", "size_out", "resample"),
    [(12, 32, "BILINEAR"), (27, 20, "BILINEAR"), (300, 32, "BOX"), (45, 7, "BOX"), (32, 32, "BOX")],
)
def test_resample_weights_are_pillows(size_in, size_out, resample):
    """The matrices of normalise_bitmap resample as Image.resize does."""
    a = np.random.default_rng(size_in).random((size_in, size_in)).astype(np.float32)
    method = getattr(Image.Resampling, resample)
    expected = np.asarray(Image.fromarray(a, mode="F").resize((size_out, size_out), method))
    weights = nist._resample_weights(size_in, size_out, resample == "BILINEAR")
    np.testing.assert_allclose(weights @ a @ weights.T, expected, atol=1e-5)


def _mixed_files(tmp_path, png_header):
    files = []
    for i in range(12):  # same-sized images, converted as one stack
        path = tmp_path / f"same_{i}.png"
        render_digit(i % 10, seed=i, size=(28, 28)).convert("L").save(path)
        files.append(path)
    for i, size in enumerate([(40, 60), (300, 200), (28, 28)]):
        path = tmp_path / f"other_{i}.jpg"
        render_digit(7 - i, seed=50 + i, size=size).save(path)
        files.append(path)
    Image.new("L", (28, 28), 255).save(tmp_path / "blank.png")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "bomb.png").write_bytes(png_header(20_000, 20_000))
    specks = np.full((28, 28), 255, dtype=np.uint8)
    specks[5:23, 12:15] = 0
    specks[1, 1] = specks[26, 3] = 0
    Image.fromarray(specks).save(tmp_path / "specks.png")
    names = ["blank.png", "text.png", "bomb.png", "specks.png"]
    return [str(p) for p in files] + [str(tmp_path / n) for n in names]


def test_features_from_paths_equal_one_file_at_a_time(tmp_path, png_header):
    paths = _mixed_files(tmp_path, png_header)
    together = pipeline.features_from_paths(paths)
    assert len(together) == len(paths)
    for path, result in zip(paths, together, strict=True):
        try:
            alone = _path_features(path)
        except ImageError as exc:
            assert isinstance(result, ImageError) and str(result) == str(exc), path
        else:
            assert isinstance(result, np.ndarray), (path, result)
            np.testing.assert_array_equal(result, alone, err_msg=path)
    errors = [str(r) for r in together if isinstance(r, ImageError)]
    assert errors == ["no digit found", "cannot identify image file", "too large: 400000000 pixels"]


def test_steps_on_a_stack_equal_each_image_alone(digits):
    rng = np.random.default_rng(0)
    ink = rng.random((6, 40, 30)).astype(np.float32) * 0.3
    ink[:, 5:35, 10:14] += 0.7  # a stroke in each, plus noise and a speck
    ink[2, 1:3, 25:27] = 1.0
    ink[4, :, 0:2] = 1.0  # clutter along an edge
    flat = ink_stage.ink_masks(ink)[0]
    thresholds, blank = ink_stage.ink_thresholds(flat)
    assert not blank.any()
    mask = pieces.remove_specks(flat > thresholds[:, None, None])
    bitmaps = nist.normalise_bitmap(flat, mask, thresholds)
    strokes = _packed(nist.normalise_strokes, bitmaps)
    slanted = _packed(nist.remove_slant, strokes)
    for i in range(len(ink)):
        np.testing.assert_array_equal(_flatten(ink[i]), flat[i])
        assert _threshold(flat[i]) == thresholds[i]
        np.testing.assert_array_equal(_specks(flat[i] > thresholds[i]), mask[i])
        np.testing.assert_array_equal(
            nist.normalise_bitmap(flat[i : i + 1], mask[i : i + 1], thresholds[i])[0], bitmaps[i]
        )
        np.testing.assert_array_equal(_packed(nist.normalise_strokes, bitmaps[i]), strokes[i])
        np.testing.assert_array_equal(_packed(nist.remove_slant, strokes[i]), slanted[i])
    assert not mask[2, 1:3, 25:27].any() and not mask[4, :, 0:2].any()
    np.testing.assert_array_equal(_counts(slanted)[3], _counts(slanted[3]))


@pytest.mark.parametrize("n", [nist.SIZE_BUCKET * 2 - 1, nist.SIZE_BUCKET * 2, 71])
def test_a_large_stack_resampled_in_width_groups_equals_each_glyph_alone(n):
    """Stacks of 2 * SIZE_BUCKET glyphs or more go in groups of like widths: same bitmaps."""
    rng = np.random.default_rng(n)
    ink = np.zeros((n, 48, 90), dtype=np.float32)
    for i in range(n):  # strokes of every width and height, in every place
        top, left = rng.integers(0, 20), rng.integers(0, 40)
        height, width = rng.integers(4, 28), rng.integers(1, 50)
        ink[i, top : top + height, left : left + width] = rng.uniform(0.4, 1.0)
        ink[i, top + height // 2, left : left + 2 * width] = 0.8
    mask = ink > 0.3
    thresholds = rng.uniform(0.3, 0.6, n)
    together = nist.normalise_bitmap(ink, mask, thresholds)
    for i in range(n):
        alone = nist.normalise_bitmap(ink[i : i + 1], mask[i : i + 1], thresholds[i])[0]
        np.testing.assert_array_equal(together[i], alone)


def _flood_fill_areas(mask):
    """Reference: 8-connected component areas by breadth-first search."""
    seen = np.zeros_like(mask)
    areas = []
    h, w = mask.shape
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        todo, area = [start], 0
        while todo:
            y, x = todo.pop()
            area += 1
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (y + dy, x + dx)
                    if 0 <= q[0] < h and 0 <= q[1] < w and mask[q] and not seen[q]:
                        seen[q] = True
                        todo.append(q)
        areas.append(area)
    return sorted(areas)


@pytest.mark.parametrize("density", [0.3, 0.45, 0.6])
def test_components_match_a_flood_fill(density):
    rng = np.random.default_rng(int(density * 100))
    for _ in range(5):
        mask = rng.random((37, 23)) < density
        assert _areas(mask) == _flood_fill_areas(mask)


def test_a_long_winding_stroke_is_one_component():
    mask = np.zeros((41, 20), dtype=bool)
    mask[::2] = True  # rows joined alternately at the right and left ends: a serpentine
    mask[1::4, -1] = True
    mask[3::4, 0] = True
    assert _areas(mask) == [mask.sum()]


def _erode_reference(b):
    """4-neighbour erosion, pixel by pixel; pixels outside the bitmap do not count."""
    out = b.copy()
    for y, x in zip(*np.nonzero(b), strict=True):
        for q in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= q[0] < 32 and 0 <= q[1] < 32 and not b[q]:
                out[y, x] = False
    return out


def _deslant_reference(b):
    """NIST's deslant, row by row."""
    inked = np.flatnonzero(b.any(axis=1))
    top, bottom = inked[0], inked[-1]
    slope = (np.argmax(b[bottom]) - np.argmax(b[top])) / (bottom - top) if bottom > top else 0.0
    out = np.zeros_like(b)
    for y in range(32):
        shift = int(np.rint(slope * (y - (top + bottom) / 2)))
        for x in range(32):
            if 0 <= x + shift < 32:
                out[y, x] = b[y, x + shift]
    return out


@pytest.mark.parametrize("density", [0.02, 0.2, 0.5, 0.9])
def test_bit_packed_steps_match_pixel_by_pixel_references(density):
    rng = np.random.default_rng(int(density * 100))
    bitmaps = rng.random((8, 32, 32)) < density
    bitmaps[:, 3:29, 9:12] = True  # a stroke, so that every bitmap has ink
    bitmaps[1] = np.eye(32, dtype=bool) | np.eye(32, k=1, dtype=bool)  # a steep slant
    bitmaps[2, :, :] = False
    bitmaps[2, 31, 0] = bitmaps[2, 0, 31] = True  # ink only in two far corners
    strokes = _packed(nist.normalise_strokes, bitmaps)
    for i, b in enumerate(bitmaps):
        on = b.sum()
        expected = b
        times = 2 if on > 560 or on < 108 else 1 if on > 412 or on < 256 else 0
        for _ in range(times):  # dilation is the erosion of the ground
            expected = _erode_reference(expected) if on > 412 else ~_erode_reference(~expected)
        np.testing.assert_array_equal(strokes[i], expected)
        np.testing.assert_array_equal(_packed(nist.remove_slant, b), _deslant_reference(b))
        counts = b.reshape(8, 4, 8, 4).sum(axis=(1, 3))
        np.testing.assert_array_equal(_counts(b), counts)


def _window_filter_reference(a, size, op):
    """Separable filter by explicit edge padding (rows, then columns)."""
    r = size // 2
    h, w = a.shape[-2:]
    padded = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(r, r)], mode="edge")
    rows = padded[..., 0:w].copy()
    for i in range(1, size):
        op(rows, padded[..., i : i + w], out=rows)
    padded = np.pad(rows, [(0, 0)] * (a.ndim - 2) + [(r, r), (0, 0)], mode="edge")
    out = padded[..., 0:h, :].copy()
    for i in range(1, size):
        op(out, padded[..., i : i + h, :], out=out)
    return out


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (3, 28, 28), (2, 4, 9), (1, 30, 3)])
@pytest.mark.parametrize("op", [np.minimum, np.maximum, np.add])
def test_window_filters_match_a_padded_reference(shape, op):
    a = np.random.default_rng(len(shape)).random(shape, dtype=np.float32)
    for size in (3, 5, 9):
        np.testing.assert_array_equal(
            ink_stage._rank_filter(a, size, op), _window_filter_reference(a, size, op)
        )


def test_specks_in_some_images_of_a_stack():
    masks = np.zeros((5, 20, 20), dtype=bool)
    masks[:, 4:16, 8:11] = True  # a stroke in every image
    masks[1, 2, 2] = masks[3, 18, 17] = True  # dust in two of them
    masks[4, 4:16, 14:17] = True  # two strokes of one digit
    cleaned = pieces.remove_specks(masks)
    assert cleaned.sum(axis=(1, 2)).tolist() == [36, 36, 36, 36, 72]
    for i in range(5):
        np.testing.assert_array_equal(_specks(masks[i]), cleaned[i])


def test_piece_table_gives_each_piece_its_box_sides_and_pixels():
    masks = np.zeros((2, 10, 12), dtype=bool)
    masks[0, 0:3, 0:2] = True  # in the top-left corner
    masks[0, 5:9, 4:7] = True
    masks[0, 9, 7] = True  # joins the block at a corner: the same piece
    masks[1, 2:4, 11] = True  # along the right side
    table = pieces.piece_table(masks)
    assert len(table) == 3
    assert table.image.tolist() == [0, 0, 1]
    assert table.size.tolist() == [6, 13, 2]
    boxes = np.stack([table.top, table.bottom, table.left, table.right], axis=1).tolist()
    assert boxes == [[0, 3, 0, 2], [5, 10, 4, 8], [2, 4, 11, 12]]
    assert table.sides.tolist() == [[2, 0, 3, 0], [0, 1, 0, 0], [0, 0, 0, 2]]
    labels = table.labels()
    assert (labels >= 0).tolist() == masks.tolist()
    np.testing.assert_array_equal(table.keep(np.array([False, True, True])), masks & (labels > 0))


def test_keep_clears_the_runs_of_the_pieces_left_out():
    """:meth:`PieceTable.keep` equals picking pixels by their labels, for any choice."""
    rng = np.random.default_rng(7)
    for _ in range(40):
        masks = rng.random((3, 17, 23)) < rng.uniform(0.1, 0.7)
        table = pieces.piece_table(masks)
        chosen = rng.random(len(table)) < 0.5
        by_labels = np.append(chosen, False)[table.labels()]
        np.testing.assert_array_equal(table.keep(chosen), by_labels)
    empty = pieces.piece_table(np.zeros((2, 4, 5), dtype=bool))
    assert not empty.keep(np.zeros(0, dtype=bool)).any()


def test_ink_levels_are_those_of_ink_masks():
    """The line reader's ink levels equal ink_masks' (including where the ground is redone)."""
    rng = np.random.default_rng(3)
    ink = rng.random((4, 48, 120)).astype(np.float32) * 0.2
    ink[:, 8:40, 10:30] += 0.75  # a bold pen: the first ground estimate climbs onto it
    ink[1, 20:24, 40:110] += 0.6
    ink[3] *= 0.05  # blank
    for got, want in zip(ink_stage.ink_levels(ink), ink_stage.ink_masks(ink)[:3], strict=True):
        np.testing.assert_array_equal(got, want)
