from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from digitcli import imaging
from digitcli.errors import ImageError
from digitcli.synth import render_digit


def test_otsu_threshold_splits_two_levels():
    values = np.concatenate([np.full(100, 0.1), np.full(30, 0.8)])
    t = imaging.otsu_threshold(values)
    assert 0.1 < t < 0.8


def test_ink_strength_detects_polarity():
    dark_on_light = np.ones((10, 10))
    dark_on_light[3:7, 4:6] = 0.0
    light_on_dark = 1.0 - dark_on_light
    for gray in (dark_on_light, light_on_dark):
        ink = imaging.ink_strength(gray)
        assert ink[5, 5] == 1.0 and ink[0, 0] == 0.0
    # forced polarity is obeyed even when it is wrong
    assert imaging.ink_strength(dark_on_light, invert=True)[5, 5] == 0.0


def test_ink_mask_refuses_blank_and_finds_strokes():
    with pytest.raises(ImageError, match="no digit found"):
        imaging.ink_mask(np.zeros((20, 20)))
    with pytest.raises(ImageError, match="no digit found"):
        imaging.ink_mask(np.full((20, 20), 0.05) + np.random.default_rng(0).random((20, 20)) * 0.01)
    ink = np.zeros((20, 20))
    ink[5:15, 9:11] = 0.9
    mask = imaging.ink_mask(ink)
    assert mask.sum() == 20 and mask[10, 10]


def test_crop_to_ink():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    mask[7, 4] = True
    assert imaging.crop_to_ink(mask).shape == (6, 6)


def test_normalise_bitmap_stretches_to_20x32_centred():
    glyph = np.ones((5, 3), dtype=bool)
    out = imaging.normalise_bitmap(glyph)
    assert out.shape == (32, 32)
    cols = np.flatnonzero(out.any(axis=0))
    rows = np.flatnonzero(out.any(axis=1))
    assert (cols[0], cols[-1]) == (6, 25)  # 20 wide, centred
    assert (rows[0], rows[-1]) == (0, 31)  # full height: ink in top and bottom rows


def test_block_counts_sums_4x4_blocks():
    bitmap = np.zeros((32, 32), dtype=bool)
    bitmap[:4, :4] = True
    bitmap[4, 4] = True
    counts = imaging.block_counts(bitmap)
    assert counts.shape == (8, 8)
    assert counts[0, 0] == 16 and counts[1, 1] == 1 and counts.sum() == 17


def _features(img: Image.Image, **kw) -> np.ndarray:
    return imaging.features_from_image(img, **kw)


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
    f = imaging.features_from_path(path)
    assert np.abs(f - _features(BASE)).sum() <= 96


def test_exif_orientation_is_applied(tmp_path):
    upright = render_digit(7, seed=1, size=(48, 64))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a sideways phone photo
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    with_exif = imaging.features_from_path(path)
    assert (
        np.abs(with_exif - _features(upright)).sum() < np.abs(with_exif - _features(stored)).sum()
    )


def test_big_photo_is_reduced_before_conversion(tmp_path):
    img = render_digit(4, size=(3000, 2000), digit_height=0.3)
    path = tmp_path / "big.jpg"
    img.save(path, quality=85)
    opened = imaging.open_image(path)
    assert max(opened.size) <= imaging.WORK_SIZE
    assert imaging.features_from_path(path).sum() > 0


def test_blank_images_are_not_guessed(tmp_path):
    for colour in (255, 0, 128):
        path = tmp_path / f"blank{colour}.png"
        Image.new("L", (50, 50), colour).save(path)
        with pytest.raises(ImageError, match="no digit found"):
            imaging.features_from_path(path)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "cannot identify"),
        (b"this is text, not a picture\n", "cannot identify"),
        (_png_header_only(100_000, 100_000), "too large"),
        (_png_header_only(20_000, 20_000), "too large: 400000000 pixels"),
    ],
    ids=["empty", "text", "bomb-over-pillow-limit", "bomb-over-our-limit"],
)
def test_unreadable_files_raise_image_error(tmp_path, content, match):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match):
        imaging.features_from_path(path)


def test_truncated_png(tmp_path):
    path = tmp_path / "t.png"
    render_digit(1, size=(200, 200)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageError, match="truncated|cannot"):
        imaging.features_from_path(path)


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(ImageError, match="folder"):
        imaging.features_from_path(tmp_path)
    with pytest.raises(ImageError, match="not found"):
        imaging.features_from_path(tmp_path / "missing.png")


def test_synthetic_digits_are_mostly_read_right(shipped_model):
    X = np.vstack(
        [_features(render_digit(d, seed=s, size=(64, 64))) for d in range(10) for s in range(5)]
    )
    y = np.repeat(np.arange(10), 5)
    accuracy = (shipped_model.predict(X)[0] == y).mean()
    assert accuracy >= 0.6  # the conversion issue raises this; here: the chain works end to end
