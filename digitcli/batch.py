"""Batch classification: walking inputs, converting images, predicting, writing rows.

Everything streams: paths are walked lazily, predictions are made in small batches, and each
row is written (and flushed) as soon as it and every row before it are done.
"""

from __future__ import annotations

import csv
import glob
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from digitcli.errors import DataError, ImageError
from digitcli.imaging import features_from_paths
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
    features: np.ndarray | None = None  # the 64 Digits values the model saw


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive) and is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_inputs(
    inputs: Iterable[str | os.PathLike[str]], stats: WalkStats | None = None
) -> Iterator[str]:
    """Expand files, folders and glob patterns into image paths, lazily.

    Folders are walked recursively in sorted order; inside them hidden entries, files without
    an image extension, links to folders and unreadable folders are skipped (and counted in
    `stats`). A path that does not exist but holds ``*``, ``?`` or ``[`` is expanded as a
    glob pattern (``**`` recursive), sorted. Anything else is yielded as given, even if
    missing, so that it gets an error row.

    Parameters
    ----------
    inputs : iterable of path-like
        Files, folders and patterns.
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
        elif not os.path.lexists(path) and glob.has_magic(path):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                yield path
            seen: set[str] = set()  # "**" follows links to folders: each file once
            for match in matches:
                real = os.path.realpath(match)
                if real in seen:
                    stats.skipped += 1
                    continue
                seen.add(real)
                yield from _walk(match, stats) if os.path.isdir(match) else [match]
        else:
            yield path


def read_path_list(stream: IO[str]) -> Iterator[str]:
    """Paths from a ``--files-from`` stream, one per line; blank lines are skipped.

    Parameters
    ----------
    stream : text stream
        A file or standard input, read lazily.

    Yields
    ------
    str
    """
    for line in stream:
        path = line.rstrip("\r\n")
        if path:
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
        elif entry.is_symlink() and _is_dir(entry):  # a link to a folder: not followed
            stats.skipped += 1
        elif is_image_name(entry.name):
            yield entry.path
        else:
            stats.skipped += 1


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop: not a folder to us
        return False


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


def convert_chunk(
    paths: list[str], invert: bool | None
) -> list[tuple[str, np.ndarray | None, str]]:
    """Convert several files (one joblib task): each file's features or its error.

    Parameters
    ----------
    paths : list of str
        Image files.
    invert : bool or None
        Polarity for the conversion.

    Returns
    -------
    list of (path, features or None, error)
    """
    return [
        (path, None, str(result)) if isinstance(result, ImageError) else (path, result, "")
        for path, result in zip(paths, features_from_paths(paths, invert), strict=True)
    ]


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(paths, size)):
        yield chunk


def iter_converted(
    paths: Iterable[str], *, invert: bool | None = None, jobs: int = 1, chunk_size: int = 64
) -> Iterator[list[tuple[str, np.ndarray | None, str]]]:
    """Convert files in chunks, in input order, in parallel when there are many.

    With ``jobs > 1`` and more than one chunk of files, chunks are converted by a joblib
    process pool; results come back in order, and at most a few chunks are in flight, so
    memory does not grow with the number of files.

    Parameters
    ----------
    paths : iterable of str
        Image files (consumed lazily).
    invert : bool or None
        Polarity for the conversion.
    jobs : int
        Worker processes (1 = convert here).
    chunk_size : int
        Files per chunk.

    Yields
    ------
    list of (path, features or None, error)
        One chunk's results.
    """
    chunks = _chunks(iter(paths), chunk_size)
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None) if jobs > 1 else None
    if second is None:
        for chunk in itertools.chain([first], chunks):
            yield convert_chunk(chunk, invert)
        return
    from joblib import Parallel, delayed

    todo = itertools.chain([first, second], chunks)
    runner = Parallel(n_jobs=jobs, return_as="generator", pre_dispatch="2*n_jobs")
    yield from runner(delayed(convert_chunk)(chunk, invert) for chunk in todo)


def classify_paths(
    paths: Iterable[str],
    model: Model,
    *,
    invert: bool | None = None,
    jobs: int = 1,
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
    jobs : int
        Worker processes for the conversion.
    batch_size : int
        How many images are converted per task and share one forward pass.

    Yields
    ------
    Result
        In input order.
    """
    # The matrix products here (forward passes, resampling) are tiny: BLAS threads would
    # only spin and take CPU from the conversion (measured: 2.4x slower on 2 cores).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        for chunk in iter_converted(paths, invert=invert, jobs=jobs, chunk_size=batch_size):
            yield from _predict_pending(chunk, model)


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
            yield Result(path, digit, float(p[digit]), p, features=features)


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


class JsonlWriter:
    """Write :class:`Result` rows as JSON lines, flushing after each.

    Keys: ``path``, ``digit`` (null when failed), ``confidence``, ``error`` and, with
    `probabilities`, ``probabilities`` (ten numbers).
    """

    def __init__(self, stream: IO[str], probabilities: bool = False) -> None:
        self.stream = stream
        self.probabilities = probabilities

    def write(self, result: Result) -> None:
        """Write one line and flush it."""
        row: dict[str, Any] = {
            "path": result.path,
            "digit": result.digit,
            "confidence": None if result.confidence is None else round(result.confidence, 4),
            "error": result.error,
        }
        if self.probabilities:
            row["probabilities"] = (
                None
                if result.probabilities is None
                else [round(float(p), 4) for p in result.probabilities]
            )
        self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.stream.flush()


WRITERS = {"csv": CsvWriter, "jsonl": JsonlWriter}


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
    "JsonlWriter",
    "WRITERS",
    "convert_chunk",
    "iter_converted",
    "read_path_list",
    "Result",
    "WalkStats",
    "classify_paths",
    "evaluate_folder",
    "is_image_name",
    "iter_inputs",
    "iter_labelled_images",
]
