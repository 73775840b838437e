"""The error sheet (eval --errors) and the grid shading of show."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from digitcli import evaluation
from digitcli.evaluation import (
    GRID_RAMP,
    SHEET_CELL_HEIGHT,
    SHEET_CELL_WIDTH,
    SHEET_CELLS,
    SHEET_COLUMNS,
    error_sheet,
    render_grid,
)
from digitcli.synth import render_digit

#: Image files the fake entries point to (reused round robin).
N_IMAGES = 10


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(N_IMAGES):
        path = tmp_path / "set" / f"digit_{i}.png"
        path.parent.mkdir(exist_ok=True)
        render_digit(i, seed=i).save(path)
        paths.append(path)
    return paths


def fake_entries(images: list[Path], n: int) -> list[evaluation.SheetEntry]:
    """`n` misread images: truth i % 10 read as the next digit, every 7th not converted."""
    entries: list[evaluation.SheetEntry] = []
    for i in range(n):
        truth = i % 10
        if i % 7 == 6:
            entries.append((str(images[truth]), truth, -1, None, None))
        else:
            grid = np.arange(64, dtype=np.float64).reshape(8, 8) % 17
            entries.append((images[truth], truth, (truth + 1) % 10, grid, 0.5 + i / (2 * n)))
    return entries


def expected_height(cells: int) -> int:
    return math.ceil(cells / SHEET_COLUMNS) * SHEET_CELL_HEIGHT


def is_blank(page: Image.Image, index: int) -> bool:
    """Whether cell `index` of `page` is all white (nothing drawn there)."""
    x, y = evaluation._cell_origin(index)
    box = page.crop((x, y, x + SHEET_CELL_WIDTH, y + SHEET_CELL_HEIGHT)).convert("L")
    return box.getextrema() == (255, 255)


def test_one_page_writes_path_itself(tmp_path, images):
    sheet = tmp_path / "errors.png"
    written = error_sheet(fake_entries(images, 7), sheet)
    assert written == [sheet]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["errors.png"]
    with Image.open(sheet) as page:
        assert page.format == "PNG"
        assert page.size == (SHEET_COLUMNS * SHEET_CELL_WIDTH, expected_height(7))
        assert not is_blank(page, 6)
        assert is_blank(page, 7)


def test_exactly_one_full_page_is_one_file(tmp_path, images):
    sheet = tmp_path / "errors.png"
    assert error_sheet(fake_entries(images, SHEET_CELLS), str(sheet)) == [sheet]


def test_many_entries_make_numbered_pages(tmp_path, images):
    n = 2 * SHEET_CELLS + 50
    sheet = tmp_path / "errors.png"
    written = error_sheet(fake_entries(images, n), sheet)
    names = ["errors-1.png", "errors-2.png", "errors-3.png"]
    assert written == [tmp_path / name for name in names]
    assert not sheet.exists()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == names
    for path, cells in zip(written, [SHEET_CELLS, SHEET_CELLS, 50], strict=True):
        with Image.open(path) as page:
            assert page.height == expected_height(cells)
            assert not is_blank(page, cells - 1)
            if cells % SHEET_COLUMNS:
                assert is_blank(page, cells)


def test_pages_of_a_name_without_suffix(tmp_path, images):
    written = error_sheet(fake_entries(images, SHEET_CELLS + 1), tmp_path / "misread")
    assert [p.name for p in written] == ["misread-1.png", "misread-2.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_no_entries_write_nothing(tmp_path):
    sheet = tmp_path / "errors.png"
    assert error_sheet([], sheet) == []
    assert list(tmp_path.iterdir()) == []


def test_label_names_the_file_and_the_confidence():
    label = evaluation._cell_label("/data/set/3/scan_0042.png", 3, 8, 0.734)
    assert label.split("\n") == ["scan_0042.png", "true 3  read 8  73%"]


def test_label_confidence_is_never_rounded_up_to_certain():
    assert evaluation._cell_label("a.png", 1, 7, 0.996).endswith("read 7  99%")
    assert evaluation._cell_label("a.png", 1, 7, 0.29).endswith("read 7  29%")
    assert evaluation._cell_label("a.png", 1, 7, 0.005).endswith("read 7  0%")
    assert evaluation._cell_label("a.png", 1, 7, 1.0).endswith("read 7  100%")


def test_label_of_an_image_not_converted():
    label = evaluation._cell_label(Path("x/broken.png"), 5, -1, None)
    assert label.split("\n") == ["broken.png", "true 5  read none"]


def test_label_shortens_a_long_name_in_the_middle():
    name = "a_very_long_file_name_from_some_scanner_0123456789.png"
    label = evaluation._cell_label(f"dir/{name}", 1, 7, 0.9, fits=lambda s: len(s) <= 20)
    first = label.split("\n")[0]
    assert len(first) == 20 and evaluation.ELLIPSIS in first
    head, tail = first.split(evaluation.ELLIPSIS)
    assert name.startswith(head) and name.endswith(tail) and tail.endswith(".png")


def test_label_fits_the_cell_in_the_sheet_font():
    font = ImageFont.load_default()
    name = "W" * 80 + ".png"

    def fits(line: str) -> bool:
        return font.getlength(line) <= evaluation.SHEET_CONTENT_WIDTH

    label = evaluation._cell_label(name, 0, 6, 0.5, fits)
    first, second = label.split("\n")
    assert fits(first) and not fits(first.replace(evaluation.ELLIPSIS, "W" + evaluation.ELLIPSIS))
    assert fits(second)


def test_label_makes_unprintable_characters_visible():
    label = evaluation._cell_label("odd\nname\udcff.png", 2, 3, 0.6)
    assert label.split("\n") == ["odd?name?.png", "true 2  read 3  60%"]


def test_sheet_draws_awkward_names(tmp_path, images):
    odd = tmp_path / ("x" * 200 + "\u65e5\u672c.png")
    render_digit(4, seed=1).save(odd)
    assert error_sheet([(odd, 4, 9, None, 0.99)], tmp_path / "e.png") == [tmp_path / "e.png"]


def test_grid_ramp_is_monotonic_and_distinct():
    assert len(GRID_RAMP) == 16
    assert list(GRID_RAMP) == sorted(set(GRID_RAMP), reverse=True)  # light to dark, distinct
    assert all(0 <= level <= 255 for level in GRID_RAMP)


def _relative_luminance(level: int) -> float:
    c = level / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def test_grid_text_contrasts_with_its_background():
    for value, level in enumerate(GRID_RAMP, start=1):
        style = evaluation._grid_style(value)
        text, background = style.split(" on ")
        assert background == "#" + f"{level:02x}" * 3
        text_y, back_y = _relative_luminance(int(text[1:3], 16)), _relative_luminance(level)
        assert text[1:3] * 3 == text[1:]  # grey text too: black or white
        contrast = (max(text_y, back_y) + 0.05) / (min(text_y, back_y) + 0.05)
        assert contrast >= 4.5, (value, style)


def test_render_grid_shades_all_values_apart():
    from rich.console import Console

    grid = np.zeros((8, 8), dtype=np.int64)
    grid.flat[:17] = np.arange(17)
    console = Console(record=True, width=120, color_system="truecolor")
    console.print(render_grid("x.png", grid, np.full(10, 0.1)))
    ansi = console.export_text(styles=True)
    cells = re.findall(r"\x1b\[([0-9;]*)m( {1,2}\.|\s*\d+)\x1b\[0m", ansi)
    style_of = {}
    for codes, shown in cells:
        value = 0 if shown.strip() == "." else int(shown)
        style_of.setdefault(value, set()).add(codes)
    assert sorted(style_of) == list(range(17))
    assert all(len(styles) == 1 for styles in style_of.values())
    styles = [next(iter(style_of[v])) for v in range(17)]
    assert len(set(styles)) == 17
    backgrounds = [re.search(r"48;2;(\d+);(\d+);(\d+)", s) for s in styles]
    assert backgrounds[0] is None  # the "." of 0 has no background
    levels = [int(b.group(1)) for b in backgrounds[1:]]
    assert all(b.group(1) == b.group(2) == b.group(3) for b in backgrounds[1:])  # grey
    assert levels == list(GRID_RAMP)
    # the text colour is explicit RGB too: black on the light half, white on the dark half
    texts = [re.search(r"38;2;(\d+);\d+;\d+", s).group(1) for s in styles[1:]]
    assert set(texts) == {"0", "255"}
    assert texts == sorted(texts, key=int)
