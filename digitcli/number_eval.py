"""Measuring the reading of whole numbers: labels, metrics, and pictures of the cuts.

``digitcli eval --numbers LABELS.csv`` reads every image a ``file,number`` CSV names, and
scores the numbers read against the labels: exact numbers, character error rate (edit
distance over the label's length), length, a breakdown by length and by kind of error, the
confusion of the digits that line up, and what ``--min-confidence`` levels would leave
unflagged and how many of those numbers are right. :func:`draw_reading` draws what was read
(the boxes of the cuts, numbered, and each digit): ``show --pieces`` and the error sheet use
it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitcli.errors import DataError

#: Kinds of error of a number read wrong, by how its length compares with the label's.
ERROR_KINDS = {
    "fewer": "fewer digits than written (digits merged, or missed)",
    "more": "more digits than written (a digit split, or an extra piece)",
    "misread": "as many digits as written, some misread",
}

#: The ``--min-confidence`` levels ``eval --numbers`` reports (:func:`confidence_table`).
CONFIDENCE_LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9)

#: At most this many numbers on one page of the error sheet.
SHEET_ROWS = 40
#: Each image on the sheet is drawn this high (pixels).
SHEET_IMAGE_HEIGHT = 64
SHEET_WIDTH = 720


@dataclass(frozen=True)
class Labelled:
    """One line of a labels CSV: the image's path (joined to the CSV's folder) and number."""

    path: str
    number: str


def read_labels(path: str | os.PathLike[str]) -> list[Labelled]:
    """Read a ``file,number`` CSV; files are relative to the CSV's folder.

    Raises
    ------
    DataError
        The file cannot be read, lacks the columns, or a number is not digits.
    """
    folder = Path(path).parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # Excel writes a BOM
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if rows and not {"file", "number"} <= set(rows[0]):
        raise DataError(f"{path}: the header must name the columns file and number")
    out = []
    for line, row in enumerate(rows, start=2):
        number = (row.get("number") or "").strip()
        if not number.isdigit() or not number.isascii():
            raise DataError(f"{path}, line {line}: number {number!r} is not digits")
        out.append(Labelled(str(folder / (row.get("file") or "")), number))
    if not out:
        raise DataError(f"{path} names no images")
    return out


def alignment(truth: str, read: str) -> tuple[int, list[tuple[str, str]]]:
    """Edit distance between two digit strings, and the pairs of digits it lines up.

    Returns
    -------
    distance : int
        Insertions, deletions and substitutions (Levenshtein).
    pairs : list of (str, str)
        ``(true digit, digit read)`` for every match and substitution of one best
        alignment.
    """
    n, m = len(truth), len(read)
    d = np.zeros((n + 1, m + 1), dtype=np.intp)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(
                d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (truth[i - 1] != read[j - 1])
            )
    pairs = []
    i, j = n, m
    while i and j:
        if d[i, j] == d[i - 1, j - 1] + (truth[i - 1] != read[j - 1]):
            pairs.append((truth[i - 1], read[j - 1]))
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(d[n, m]), pairs[::-1]


def number_metrics(
    truths: Sequence[str],
    reads: Sequence[str],
    *,
    confidences: Sequence[float | None] | None = None,
) -> dict[str, Any]:
    """Score numbers read against their labels.

    Parameters
    ----------
    truths, reads : sequence of str
        The labels, and the digits read (``""`` for an image that failed).
    confidences : sequence of float or None, optional
        Each reading's confidence (``None`` for an image that failed); with them the
        result has ``by_confidence`` (:func:`confidence_table`).

    Returns
    -------
    dict
        ``n``, ``exact``, ``cer`` (summed edit distance / summed label length),
        ``length_accuracy``, ``by_length`` (``{length: {"n", "exact"}}``), ``errors``
        (count of each of :data:`ERROR_KINDS`), ``digit_accuracy`` (of the lined-up
        digits) and ``confusion`` (10x10, true digit by row).
    """
    confusion = np.zeros((10, 10), dtype=np.int64)
    exact = distance = letters = same_length = 0
    by_length: dict[int, dict[str, int]] = {}
    errors = dict.fromkeys(ERROR_KINDS, 0)
    for truth, read in zip(truths, reads, strict=True):
        d, pairs = alignment(truth, read)
        for t, r in pairs:
            confusion[int(t), int(r)] += 1
        distance += d
        letters += len(truth)
        exact += truth == read
        same_length += len(truth) == len(read)
        group = by_length.setdefault(len(truth), {"n": 0, "exact": 0})
        group["n"] += 1
        group["exact"] += truth == read
        if truth != read:
            kind = (
                "fewer"
                if len(read) < len(truth)
                else "more"
                if len(read) > len(truth)
                else "misread"
            )
            errors[kind] += 1
    n = len(truths)
    lined_up = int(confusion.sum())
    extra = (
        {}
        if confidences is None
        else {"by_confidence": confidence_table(truths, reads, confidences)}
    )
    return {
        "n": n,
        "exact": exact / n if n else 0.0,
        "cer": distance / letters if letters else 0.0,
        "length_accuracy": same_length / n if n else 0.0,
        "by_length": {k: by_length[k] for k in sorted(by_length)},
        "errors": errors,
        "digit_accuracy": float(np.trace(confusion)) / lined_up if lined_up else 0.0,
        "confusion": confusion.tolist(),
        **extra,
    }


def confidence_table(
    truths: Sequence[str],
    reads: Sequence[str],
    confidences: Sequence[float | None],
    levels: Sequence[float] = CONFIDENCE_LEVELS,
) -> list[dict[str, Any]]:
    """What each ``--min-confidence`` level would leave unflagged, and how much of it is right.

    ``read --min-confidence P`` flags the numbers whose confidence is below P; the others
    are the ones a script would take as they are. A failed image (confidence ``None``)
    is never among them.

    Returns
    -------
    list of dict
        Per level: ``min_confidence``, ``kept`` (numbers at or above it), ``kept_share``
        (of all) and ``exact`` (the share of those read exactly; ``None`` if none are kept).
    """
    from digitcli.batch import low_confidence

    table = []
    for level in levels:
        right = [
            truth == read
            for truth, read, c in zip(truths, reads, confidences, strict=True)
            if c is not None and not low_confidence(c, level)
        ]
        table.append(
            {
                "min_confidence": level,
                "kept": len(right),
                "kept_share": len(right) / len(truths) if truths else 0.0,
                "exact": sum(right) / len(right) if right else None,
            }
        )
    return table


def render_number_metrics(metrics: dict[str, Any], source: str) -> list[Any]:
    """Rich tables of :func:`number_metrics`: summary, by length, confusion, by confidence."""
    from rich.table import Table

    summary = Table(title=f"Numbers read: {source}", show_header=False)
    summary.add_row("images", str(metrics["n"]))
    summary.add_row("exact numbers", f"{metrics['exact']:.4f}")
    summary.add_row("character error rate", f"{metrics['cer']:.4f}")
    summary.add_row("right length", f"{metrics['length_accuracy']:.4f}")
    summary.add_row("lined-up digits right", f"{metrics['digit_accuracy']:.4f}")
    for kind, count in metrics["errors"].items():
        summary.add_row(ERROR_KINDS[kind], str(count))
    lengths = Table(title="By length")
    for column in ("digits", "images", "exact"):
        lengths.add_column(column, justify="right")
    for length, group in metrics["by_length"].items():
        lengths.add_row(str(length), str(group["n"]), f"{group['exact'] / group['n']:.4f}")
    confusion = Table(title="Lined-up digits (rows: true, columns: read)")
    confusion.add_column("")
    for d in range(10):
        confusion.add_column(str(d), justify="right")
    for d, row in enumerate(metrics["confusion"]):
        confusion.add_row(str(d), *(str(v) if v else "." for v in row))
    tables = [summary, lengths, confusion]
    if "by_confidence" in metrics:
        levels = Table(title="By --min-confidence (numbers not flagged)")
        for column in ("min confidence", "kept", "share", "exact of kept"):
            levels.add_column(column, justify="right")
        for row in metrics["by_confidence"]:
            exact = "-" if row["exact"] is None else f"{row['exact']:.4f}"
            levels.add_row(
                f"{row['min_confidence']:g}", str(row["kept"]), f"{row['kept_share']:.4f}", exact
            )
        tables.append(levels)
    return tables


def draw_reading(image: Any, glyphs: Iterable[Any], *, height: int | None = None) -> Any:
    """The image with each glyph's box, its number and the character read.

    Parameters
    ----------
    image : PIL.Image.Image
        The image read (as decoded: :func:`~digitcli.conversion.decode.open_image`).
    glyphs : iterable of Glyph
        What was read (:class:`digitcli.segment.Glyph`), boxes in the image's pixels.
    height : int or None
        Scale the drawing to this height (the boxes with it).

    Returns
    -------
    PIL.Image.Image
        RGB, the character read above each box, its number below.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    scale = 1.0 if height is None else height / image.height
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    picture = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    margin = 14
    out = Image.new("RGB", (size[0], size[1] + 2 * margin), "white")
    out.paste(picture, (0, margin))
    draw = ImageDraw.Draw(out)
    colours = ((220, 0, 0), (0, 140, 0), (0, 0, 220))
    for i, g in enumerate(glyphs):
        top, bottom, left, right = (round(v * scale) for v in g.box)
        colour = colours[i % len(colours)]
        draw.rectangle(
            [left, top + margin, max(left, right - 1), max(top, bottom - 1) + margin],
            outline=colour,
        )
        draw.text((left, 1), g.text, fill=colour, font=font)
        draw.text((left, size[1] + margin + 1), str(i + 1), fill=colour, font=font)
    return out


def ink_picture(image: Any, glyphs: Sequence[Any], *, columns: int = 96) -> str:
    """The image's ink as half-block text at most `columns` wide, each glyph numbered below.

    Parameters
    ----------
    image : PIL.Image.Image
        The image read.
    glyphs : sequence of Glyph
        What was read; glyph ``i`` is numbered ``i + 1`` under the middle of its box.
    columns : int
        Width of the picture in characters.

    Returns
    -------
    str
        The picture's lines, then a line of numbers.
    """
    from PIL import Image

    from digitcli.conversion.decode import gray_pixels, scaled
    from digitcli.conversion.ink import ink_strength
    from digitcli.evaluation import bitmap_text

    scale = min(1.0, columns / image.width)
    size = (max(1, round(image.width * scale)), max(2, 2 * round(image.height * scale / 2)))
    gray = scaled(gray_pixels(image.convert("L").resize(size, Image.Resampling.BOX)))
    ink = ink_strength(gray[None])[0]
    picture = bitmap_text(ink > max(0.25, float(ink.max()) / 2))
    numbers = [" "] * size[0]
    for i, g in enumerate(glyphs):
        label = str(i + 1)
        at = min(
            size[0] - len(label), max(0, round((g.box[2] + g.box[3]) / 2 * scale) - len(label) // 2)
        )
        numbers[at : at + len(label)] = label
    return picture + "\n" + "".join(numbers).rstrip()


def number_error_sheet(
    entries: Sequence[tuple[str, str, Any]], path: str | os.PathLike[str]
) -> list[Path]:
    """Write sheets of numbers read wrong: each image with its cuts, the truth and the reading.

    Parameters
    ----------
    entries : sequence of (path, truth, NumberResult)
        The numbers read wrong.
    path : str or path-like
        The PNG; more pages go to ``stem-1.png``, ``stem-2.png``, ... beside it.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from PIL import Image, ImageDraw, ImageFont

    from digitcli.conversion.decode import open_image
    from digitcli.errors import ImageError
    from digitcli.evaluation import page_paths

    font = ImageFont.load_default()
    pages = [entries[i : i + SHEET_ROWS] for i in range(0, len(entries), SHEET_ROWS)]
    targets = page_paths(Path(path), len(pages))
    row_height = SHEET_IMAGE_HEIGHT + 30
    for page, out in zip(pages, targets, strict=True):
        sheet = Image.new("RGB", (SHEET_WIDTH, len(page) * row_height), "white")
        draw = ImageDraw.Draw(sheet)
        for i, (image_path, truth, result) in enumerate(page):
            y = i * row_height
            reading = result.reading
            try:
                picture = draw_reading(
                    open_image(image_path),
                    reading.glyphs if reading is not None else (),
                    height=SHEET_IMAGE_HEIGHT,
                )
            except ImageError:
                picture = Image.new("RGB", (SHEET_IMAGE_HEIGHT, SHEET_IMAGE_HEIGHT), "lightgrey")
            width = min(picture.width, SHEET_WIDTH - 200)
            sheet.paste(picture.crop((0, 0, width, picture.height)), (0, y))
            read = reading.number if reading is not None else result.error
            text = f"{Path(image_path).name}\ntrue {truth}\nread {read}"
            if reading is not None:
                text += f"  {100 * reading.confidence:.0f}%"
            draw.multiline_text((width + 8, y + 4), text, fill="black", font=font)
        sheet.save(out, format="PNG")
    return targets


def evaluate_numbers(
    labels: str | os.PathLike[str], model: Any, *, invert: bool | None = None, jobs: int = 1
) -> tuple[list[Labelled], list[Any]]:
    """Read every image a labels CSV names (:func:`digitcli.reading.read_batches`).

    Returns
    -------
    labelled, results
        The labels, and the :class:`~digitcli.reading.NumberResult` of each, in order.
    """
    from digitcli.reading import read_batches

    labelled = read_labels(labels)
    results = [
        r
        for batch in read_batches([x.path for x in labelled], model, invert=invert, jobs=jobs)
        for r in batch
    ]
    return labelled, results


def digits_read(result: Any) -> str:
    """The digits of a result's reading, ``""`` when it failed."""
    reading = result.reading
    return "" if reading is None else "".join(c for c in reading.number if c.isdigit())


__all__ = [
    "CONFIDENCE_LEVELS",
    "ERROR_KINDS",
    "Labelled",
    "alignment",
    "confidence_table",
    "digits_read",
    "draw_reading",
    "evaluate_numbers",
    "ink_picture",
    "number_error_sheet",
    "number_metrics",
    "read_labels",
    "render_number_metrics",
]
