"""Batch classification: walking inputs, converting images, predicting, writing rows.

Everything streams: paths are walked lazily, predictions are made in small batches, and each
row is written (and flushed) as soon as it and every row before it are done.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from digitcli.errors import DataError, ImageError
from digitcli.imaging import features_from_path
from digitcli.model import Model

#: File endings classify picks up inside folders (files named explicitly are always tried).
IMAGE_EXTENSIONS = frozenset(
    [
        ".png",
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".bmp",
        ".dib",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".pbm",
        ".pgm",
        ".ppm",
        ".pnm",
    ]
)


@dataclass
class WalkStats:
    """What walking the inputs passed over."""

    skipped: int = 0


@dataclass(frozen=True)
class Result:
    """One input file's outcome: a prediction, or an error and no prediction."""

    path: str
    digit: int | None = None
    confidence: float | None = None
    probabilities: np.ndarray | None = None
    error: str = ""


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive) and is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_inputs(
    inputs: Iterable[str | os.PathLike[str]], stats: WalkStats | None = None
) -> Iterator[str]:
    """Expand files and folders into image paths.

    Folders are walked recursively in sorted order; inside them hidden entries and files
    without an image extension are skipped (and counted in `stats`). Paths given directly
    are yielded as they are, even if missing, so that they get an error row.

    Parameters
    ----------
    inputs : iterable of path-like
        Files and folders.
    stats : WalkStats or None
        Receives the count of skipped files.

    Yields
    ------
    str
        Image paths.
    """
    stats = stats if stats is not None else WalkStats()
    for item in inputs:
        path = os.fspath(item)
        if os.path.isdir(path):
            yield from _walk(path, stats)
        else:
            yield path


def _walk(folder: str, stats: WalkStats) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        stats.skipped += 1
        return
    for entry in entries:
        if entry.name.startswith("."):
            stats.skipped += 1
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, stats)
        elif is_image_name(entry.name):
            yield entry.path
        else:
            stats.skipped += 1


def iter_labelled_images(root: str | os.PathLike[str]) -> Iterator[tuple[str, int]]:
    """Images of a labelled folder laid out as ``root/<digit>/<file>``.

    Parameters
    ----------
    root : path-like
        The folder.

    Yields
    ------
    (str, int)
        Image path and its true digit.

    Raises
    ------
    DataError
        If `root` has no ``0`` .. ``9`` sub-folders.
    """
    labels = [d for d in range(10) if os.path.isdir(os.path.join(root, str(d)))]
    if not labels:
        raise DataError(f"{root} has no digit folders (expected {root}/0 .. {root}/9)")
    for d in labels:
        for path in iter_inputs([os.path.join(root, str(d))]):
            yield path, d


def classify_paths(
    paths: Iterable[str],
    model: Model,
    *,
    invert: bool | None = None,
    batch_size: int = 64,
) -> Iterator[Result]:
    """Classify image files in order, one :class:`Result` each; a bad file is an error row.

    Parameters
    ----------
    paths : iterable of str
        Image files.
    model : Model
        The classifier.
    invert : bool or None
        Polarity for the conversion (``None`` = detect).
    batch_size : int
        How many images share one forward pass.

    Yields
    ------
    Result
        In input order.
    """
    pending: list[tuple[str, np.ndarray | None, str]] = []
    for path in paths:
        try:
            pending.append((path, features_from_path(path, invert), ""))
        except ImageError as exc:
            pending.append((path, None, str(exc)))
        if len(pending) >= batch_size:
            yield from _predict_pending(pending, model)
            pending = []
    yield from _predict_pending(pending, model)


def _predict_pending(
    pending: list[tuple[str, np.ndarray | None, str]], model: Model
) -> Iterator[Result]:
    ok = [f for _, f, _ in pending if f is not None]
    probs = model.predict_proba(np.vstack(ok)) if ok else np.empty((0, 10))
    k = 0
    for path, features, error in pending:
        if features is None:
            yield Result(path, error=error)
        else:
            p = probs[k]
            k += 1
            digit = int(p.argmax())
            yield Result(path, digit, float(p[digit]), p)


class CsvWriter:
    """Write :class:`Result` rows as RFC 4180 CSV, flushing after each row.

    Columns: ``path,digit,confidence,error`` and, with `probabilities`, ``p0`` .. ``p9``.
    """

    def __init__(self, stream: IO[str], probabilities: bool = False) -> None:
        self.stream = stream
        self.probabilities = probabilities
        self.writer = csv.writer(stream, lineterminator="\r\n")
        header = ["path", "digit", "confidence", "error"]
        if probabilities:
            header += [f"p{d}" for d in range(10)]
        self.writer.writerow(header)
        stream.flush()

    def write(self, result: Result) -> None:
        """Write one row and flush it."""
        ok = result.digit is not None
        row = [
            result.path,
            str(result.digit) if ok else "",
            f"{result.confidence:.4f}" if ok else "",
            result.error,
        ]
        if self.probabilities:
            if result.probabilities is not None:
                row += [f"{p:.4f}" for p in result.probabilities]
            else:
                row += [""] * 10
        self.writer.writerow(row)
        self.stream.flush()


def evaluate_folder(
    root: str | os.PathLike[str], model: Model, invert: bool | None = None
) -> tuple[np.ndarray, np.ndarray, list[Result]]:
    """Classify a labelled folder (``root/<digit>/<file>``).

    Returns
    -------
    y_true, y_pred, results
        ``y_pred`` is -1 where an image could not be converted.
    """
    items = list(iter_labelled_images(root))
    results = list(classify_paths([p for p, _ in items], model, invert=invert))
    y_true = np.array([d for _, d in items], dtype=np.int64)
    y_pred = np.array([-1 if r.digit is None else r.digit for r in results], dtype=np.int64)
    return y_true, y_pred, results


__all__ = [
    "IMAGE_EXTENSIONS",
    "CsvWriter",
    "Result",
    "WalkStats",
    "classify_paths",
    "evaluate_folder",
    "is_image_name",
    "iter_inputs",
    "iter_labelled_images",
]
