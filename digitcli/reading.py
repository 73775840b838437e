"""Reading whole numbers from image files, one row per image: the batch side of :mod:`segment`.

Files go in chunks to the workers (:func:`digitcli.batch.map_chunks`), which decode each one
and lay out its candidate pieces (:func:`digitcli.segment.layout`, no model needed). Here the
model reads every candidate of a chunk in one pass and each line is cut
(:func:`digitcli.segment.read_layouts`). A file that cannot be read is a row with its error,
exactly as in ``classify``.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from digitcli.batch import (
    BATCH_SIZE,
    NO_PROBABILITY,
    WORKER_DIED,
    json_line,
    low_confidence,
    map_chunks,
)
from digitcli.conversion.decode import SOURCE_SIZE, gray_pixels, image_error, open_image, scaled
from digitcli.parallel import WorkerDied
from digitcli.segment import (
    DEFAULT_WEIGHTS,
    Classifier,
    Layout,
    Reading,
    Weights,
    layout,
    read_layouts,
)

#: Images are decoded with their longest side at most this ...
READ_MAX_SIDE = 4096
#: ... then reduced to at most this many pixels high.
READ_MAX_HEIGHT = 160

#: The error of an image in which no ink was found.
NO_DIGIT = "no digit found"

#: One chunk laid out: its paths, each one's layout (``None`` where it failed) and error.
LaidOut = tuple[list[str], list[Layout | None], list[str]]


@dataclass(frozen=True)
class NumberResult:
    """One input file's outcome: the number read, or an error and no reading."""

    path: str
    reading: Reading | None = None
    error: str = ""
    flag: str = ""  # read, but worth a look: "low confidence: C < P"


def layout_file(path: str, *, invert: bool | None = None) -> Layout | None:
    """Decode one image file and lay out its line (:func:`digitcli.segment.layout`).

    The image is decoded with its longest side at most :data:`READ_MAX_SIDE` (a long line
    keeps its digits' detail), then reduced to at most :data:`READ_MAX_HEIGHT` pixels
    high (a line's digits need no more, and the work grows with the pixels). The boxes are
    given in the pixels of the upright file.

    Raises
    ------
    ImageError
        The file cannot be read as an image.
    """
    from PIL import Image

    img = open_image(path, max_side=READ_MAX_SIDE)
    source_w, source_h = img.info.get(SOURCE_SIZE, img.size)
    if img.height > READ_MAX_HEIGHT:
        size = (max(1, round(img.width * READ_MAX_HEIGHT / img.height)), READ_MAX_HEIGHT)
        img = img.resize(size, Image.Resampling.BOX)
    lay = layout(scaled(gray_pixels(img)), invert=invert, every_span=False)
    if lay is None or (source_w, source_h) == img.size:
        return lay
    return lay.scaled(source_w / img.width, source_h / img.height)


def layout_chunk(paths: list[str], invert: bool | None) -> LaidOut:
    """Lay out several files (one task of the process pool); never raises for a bad file."""
    layouts: list[Layout | None] = []
    errors = []
    for path in paths:
        try:
            lay = layout_file(path, invert=invert)
        except Exception as exc:  # noqa: BLE001 - that file's error, never a crash
            layouts.append(None)
            errors.append(str(image_error(exc)))
            continue
        layouts.append(lay)
        errors.append("" if lay is not None else NO_DIGIT)
    return paths, layouts, errors


def _one_by_one(paths: list[str], run: Callable[[list[str]], LaidOut]) -> LaidOut:
    """Lay out files one at a time; a file whose worker dies gets its error."""
    layouts: list[Layout | None] = []
    errors = []
    for path in paths:
        try:
            _, (lay,), (error,) = run([path])
        except WorkerDied:
            lay, error = None, WORKER_DIED
        layouts.append(lay)
        errors.append(error)
    return paths, layouts, errors


def read_batches(
    paths: Iterable[str],
    model: Classifier,
    *,
    invert: bool | None = None,
    jobs: int = 1,
    batch_size: int = BATCH_SIZE,
    min_confidence: float | None = None,
    keep_separators: bool = False,
    weights: Weights = DEFAULT_WEIGHTS,
) -> Iterator[list[NumberResult]]:
    """Read the number in each image file, in order, a batch of results at a time.

    Parameters
    ----------
    paths : iterable of str
        Image files (consumed lazily).
    model : Classifier
        The digit classifier (:class:`digitcli.model.Model`).
    invert : bool or None
        Polarity (``None`` = detect).
    jobs : int
        Worker processes for decoding and laying out.
    batch_size : int
        Files per batch.
    min_confidence : float or None
        Numbers read with a lower confidence are flagged ``low confidence: C < P``.
    keep_separators : bool
        Keep ``.`` ``,`` ``'`` between digits.
    weights : Weights
        How candidate pieces are scored.

    Yields
    ------
    list of NumberResult
        In input order.
    """
    from threadpoolctl import threadpool_limits

    work = functools.partial(layout_chunk, invert=invert)
    with threadpool_limits(limits=1):  # tiny products: BLAS threads would only spin
        chunks = map_chunks(work, paths, jobs=jobs, chunk_size=batch_size, salvage=_one_by_one)
        for chunk_paths, layouts, errors in chunks:
            readings = read_layouts(
                layouts, model, weights=weights, keep_separators=keep_separators
            )
            results = []
            for path, reading, error in zip(chunk_paths, readings, errors, strict=True):
                if error or reading is None:
                    results.append(NumberResult(path, error=error or NO_PROBABILITY))
                    continue
                flag = low_confidence(reading.confidence, min_confidence)
                results.append(NumberResult(path, reading, flag=flag))
            yield results


def _details(reading: Reading | None) -> list[dict[str, Any]]:
    if reading is None:
        return []
    return [
        {"text": g.text, "probability": round(g.probability, 4), "box": list(g.box)}
        for g in reading.glyphs
    ]


def _fields(result: NumberResult) -> dict[str, Any]:
    reading = result.reading
    return {
        "path": result.path,
        "number": reading.number if reading is not None else "",
        "confidence": None if reading is None else round(reading.confidence, 4),
        "digits": 0 if reading is None else reading.digits,
        "error": result.error,
        "flag": result.flag,
    }


class NumberCsvWriter:
    """Write :class:`NumberResult` rows as CSV: ``path,number,confidence,digits,error,flag``.

    With `details`, a ``details`` column holds each glyph (text, probability, box ``top,
    bottom, left, right``) as a JSON list. Numbers are text: leading zeros are kept.
    """

    def __init__(self, stream: IO[str], details: bool = False) -> None:
        self.stream = stream
        self.details = details
        self.writer = csv.writer(stream, lineterminator="\n")
        self.quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
        header = ["path", "number", "confidence", "digits", "error", "flag"]
        self.writer.writerow([*header, "details"] if details else header)
        stream.flush()

    def write(self, result: NumberResult) -> None:
        """Write one row."""
        fields = _fields(result)
        confidence = fields["confidence"]
        row = [
            result.path,
            fields["number"],
            "" if confidence is None else f"{confidence:.4f}",
            str(fields["digits"]) if result.reading is not None else "",
            result.error,
            result.flag,
        ]
        if self.details:
            row.append(json.dumps(_details(result.reading), separators=(",", ":")))
        (self.quoted if "\r" in result.path else self.writer).writerow(row)

    def flush(self) -> None:
        """Flush the rows written so far."""
        self.stream.flush()


class NumberJsonlWriter:
    """Write :class:`NumberResult` rows as JSON lines (keys as the CSV's columns).

    With `details`, ``details`` is a list of ``{"text", "probability", "box"}``.
    """

    def __init__(self, stream: IO[str], details: bool = False) -> None:
        self.stream = stream
        self.details = details

    def write(self, result: NumberResult) -> None:
        """Write one line."""
        row = _fields(result)
        if result.reading is None:
            row["digits"] = None
        if self.details:
            row["details"] = _details(result.reading)
        self.stream.write(json_line(row))

    def flush(self) -> None:
        """Flush the lines written so far."""
        self.stream.flush()


NUMBER_WRITERS = {"csv": NumberCsvWriter, "jsonl": NumberJsonlWriter}

__all__ = [
    "NO_DIGIT",
    "NUMBER_WRITERS",
    "NumberCsvWriter",
    "NumberJsonlWriter",
    "NumberResult",
    "layout_chunk",
    "layout_file",
    "read_batches",
]
