"""Batch classification: walking inputs, converting images, predicting, writing rows.

Everything streams: paths are walked lazily, predictions are made in small batches, and each
row is written as soon as it and every row before it are done (flushed a batch at a time).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import functools
import glob
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import numpy as np

from digitcli.conversion.decode import IMAGE_PREFIXES
from digitcli.conversion.pipeline import features_and_counts_from_paths
from digitcli.errors import DataError, ImageError
from digitcli.model import Model
from digitcli.parallel import WorkerDied, joblib_backend, ordered_map

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


#: Files per batch: converted as one task of the pool, one forward pass, flushed together.
#: Each stack has a fixed cost: 10,000 28x28 PNGs on 2 workers took 0.94 s in chunks of 128,
#: 0.89 s of 256, 0.86 s of 512 and of 1024 (and 1.05-1.17 s of 64).
BATCH_SIZE = 512
#: ... and of at most about this many bytes of files (256 KiB): a photo is a task of
#: its own, so that 20 photos keep every worker busy instead of one.
CHUNK_BYTES = 1 << 18


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
    flag: str = ""  # read, but worth a look: "low confidence: C < P"


def looks_like_image(path: str) -> bool:
    """Whether an existing file is an image, by its name or its first bytes."""
    if not os.path.isfile(path):
        return False
    if is_image_name(os.path.basename(path)):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(8).startswith(IMAGE_PREFIXES)
    except OSError:
        return False


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
        if "\0" in path:  # no such file can exist: its row says so
            yield path
        elif os.path.isdir(path):
            yield from _walk(path, stats)
        elif not os.path.lexists(path) and glob.has_magic(path):
            matches = _expand(path, stats)
            if not matches:
                yield path
            for match in matches:
                yield from _walk(match, stats) if os.path.isdir(match) else [match]
        else:
            yield path


#: The longest line of a path list: a path is at most 4096 bytes on Linux (PATH_MAX).
MAX_LINE = 16_384


def read_path_list(stream: IO[str], *, sep: str = "\n") -> Iterator[str]:
    """Paths from a ``--files-from`` stream, one per line (or NUL-separated); empty ones skipped.

    Parameters
    ----------
    stream : text stream
        A file or standard input, read lazily and in bounded pieces.
    sep : str
        ``"\n"`` (a trailing ``\r`` is dropped too) or ``"\0"`` (``find -print0``).

    Yields
    ------
    str

    Raises
    ------
    DataError
        If an entry is longer than :data:`MAX_LINE` characters (``/dev/zero``, a binary
        file): memory stays bounded whatever the stream holds.
    """
    name = getattr(stream, "name", "the path list")
    buffer = ""
    number = 0
    while True:
        piece = stream.read(MAX_LINE)
        end = not piece
        buffer += piece
        *entries, buffer = buffer.split(sep) if not end else [*buffer.split(sep), ""]
        for entry in entries:
            number += 1
            path = entry.removesuffix("\r") if sep == "\n" else entry
            if path:
                yield path
            elif sep == "\0" and not end:  # find -print0 never writes two NULs in a row
                raise DataError(f"{name}: entry {number} is empty: not a list of paths")
        if len(buffer) > MAX_LINE:
            raise DataError(f"{name}: entry {number + 1} is longer than {MAX_LINE} characters")
        if end:
            return


def _expand(pattern: str, stats: WalkStats) -> list[str]:
    """The paths a glob pattern matches, sorted; ``**`` matches folders at any depth.

    Unlike :func:`glob.glob`, links to folders are not followed (a link back to a parent
    made ``**`` grow without end) and no recursion is used (any depth).
    """
    parts = pattern.split(os.sep)
    fixed = list(itertools.takewhile(lambda p: not glob.has_magic(p), parts))
    base = os.sep.join(fixed) or ("" if not pattern.startswith(os.sep) else os.sep)
    rule = re.compile(_translate(parts[len(fixed) :]), re.DOTALL)
    found = []
    stack = [base or os.curdir]
    while stack:
        folder = stack.pop()
        try:
            entries = _sorted_entries(folder)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and _is_dir(entry):  # a link to a folder: not followed
                stats.skipped += 1
                continue
            path = entry.path if base else os.path.relpath(entry.path, os.curdir)
            relative = path[len(base) :].lstrip(os.sep) if base else path
            if rule.fullmatch(relative):
                found.append(path)
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return sorted(found)


def _translate(parts: list[str]) -> str:
    """A regular expression for glob pattern components; ``**`` spans folders."""
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        j = 0
        while j < len(part):
            ch = part[j]
            close = part.find("]", j + 2) if ch == "[" else -1
            if ch == "*":
                out.append("[^/]*")
            elif ch == "?":
                out.append("[^/]")
            elif close > 0:
                inside = part[j + 1 : close]
                inside = "^" + inside[1:] if inside.startswith("!") else inside
                out.append("[" + inside.replace("\\", "\\\\") + "]")
                j = close
            else:
                out.append(re.escape(ch))
            j += 1
        out.append("" if last else "/")
    return "".join(out)


def _walk(folder: str, stats: WalkStats) -> Iterator[str]:
    """Image files below `folder` in sorted order (depth first), without recursion.

    A folder named by the user that cannot be read is yielded itself, so that it gets an
    error row; one found inside is skipped and counted.
    """
    try:
        top = _sorted_entries(folder)
    except OSError:
        yield folder
        return
    stack = [top]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.name.startswith("."):
            stats.skipped += 1
        elif entry.is_dir(follow_symlinks=False):
            try:
                stack.append(_sorted_entries(entry.path))
            except OSError:
                stats.skipped += 1
        elif entry.is_symlink() and _is_dir(entry):  # a link to a folder: not followed
            stats.skipped += 1
        elif is_image_name(entry.name):
            yield entry.path
        else:
            stats.skipped += 1


def _sorted_entries(folder: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return iter(sorted(entries, key=lambda e: e.name))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop: not a folder to us
        return False


#: One converted chunk: its paths, the features of each (zeros where it failed, uint8),
#: each one's error ("" when converted) and its digits side by side (int, 0 where it
#: failed). Few, compact objects: cheap to send between processes.
Converted = tuple[list[str], np.ndarray, list[str], np.ndarray]


def convert_chunk(paths: list[str], invert: bool | None) -> Converted:
    """Convert several files (one task of the process pool).

    Parameters
    ----------
    paths : list of str
        Image files.
    invert : bool or None
        Polarity for the conversion.

    Returns
    -------
    (paths, features, errors, side_by_side)
        ``features`` is uint8 ``(len(paths), 64)``, zeros where ``errors`` says why not;
        ``side_by_side`` counts the digit-sized pieces side by side in each image
        (:func:`~digitcli.conversion.pieces.digits_side_by_side`).
    """
    features = np.zeros((len(paths), 64), dtype=np.uint8)
    counts = np.zeros(len(paths), dtype=np.intp)
    errors = [""] * len(paths)
    for i, result in enumerate(features_and_counts_from_paths(paths, invert=invert)):
        if isinstance(result, ImageError):
            errors[i] = str(result)
        else:
            features[i], counts[i] = result
    return paths, features, errors, counts


#: The error of a file whose conversion killed its worker process (a crashing decoder, the
#: out-of-memory killer, a kill signal).
WORKER_DIED = "worker died"


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    """Chunks of at most `size` files, and of about :data:`CHUNK_BYTES` of files at most.

    Big files get chunks of their own, so that a few large photos still keep every worker
    busy; a file whose size cannot be read counts as empty (its worker says why).
    """
    chunk: list[str] = []
    total = 0
    for path in paths:
        chunk.append(path)
        with contextlib.suppress(OSError, ValueError):
            total += os.stat(path).st_size
        if len(chunk) >= size or total >= CHUNK_BYTES:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def _one_by_one(paths: list[str], convert: Callable[[list[str]], Converted]) -> Converted:
    """Convert files one at a time; a file whose worker dies gets :data:`WORKER_DIED`."""
    features = np.zeros((len(paths), 64), dtype=np.uint8)
    counts = np.zeros(len(paths), dtype=np.intp)
    errors = [""] * len(paths)
    for i, path in enumerate(paths):
        try:
            _, features[i : i + 1], errors[i : i + 1], counts[i : i + 1] = convert([path])
        except WorkerDied:
            errors[i] = WORKER_DIED
    return paths, features, errors, counts


def iter_converted(
    paths: Iterable[str], *, invert: bool | None = None, jobs: int = 1, chunk_size: int = BATCH_SIZE
) -> Iterator[Converted]:
    """Convert files in chunks, in input order, in parallel when there are many.

    Chunks are converted by :func:`digitcli.parallel.ordered_map`: here with ``jobs=1`` or
    a single chunk, else by a pool of worker processes, or on the joblib backend chosen by
    the caller (a Dask cluster: :func:`digitcli.parallel.scheduler`).
    Results come back in order, and only a few chunks are in flight, so memory does not
    grow with the number of files. In the pool, a worker that dies (a crashing decoder,
    the out-of-memory killer) costs only the file it was converting: that file's error is
    :data:`WORKER_DIED`, and the run goes on.

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
    (paths, features, errors, side_by_side)
        One chunk's results (see :func:`convert_chunk`).
    """
    convert = functools.partial(convert_chunk, invert=invert)
    yield from map_chunks(convert, paths, jobs=jobs, chunk_size=chunk_size, salvage=_one_by_one)


#: What a chunk function returns: the chunk's paths first, then its results.
Chunked = TypeVar("Chunked", bound=tuple[Any, ...])


def map_chunks(
    fn: Callable[[list[str]], Chunked],
    paths: Iterable[str],
    *,
    jobs: int = 1,
    chunk_size: int = BATCH_SIZE,
    salvage: Callable[[list[str], Callable[[list[str]], Chunked]], Chunked],
) -> Iterator[Chunked]:
    """Run `fn` on chunks of files, in input order, in parallel (:func:`ordered_map`).

    Chunks hold at most `chunk_size` files and about :data:`CHUNK_BYTES`. Workers of a
    chosen joblib backend (a Dask cluster) run in folders of their own: they are given
    absolute paths, and the results keep the paths as given (the first item of each
    result is replaced by the chunk's paths).

    Parameters
    ----------
    fn : callable
        ``fn(paths)`` -> a tuple whose first item is the paths.
    paths : iterable of str
        Image files (consumed lazily).
    jobs : int
        Worker processes (1 = here).
    chunk_size : int
        Files per chunk.
    salvage : callable
        ``salvage(paths, fn)`` for a chunk that killed its worker twice (one file at a time).

    Yields
    ------
    tuple
        ``fn(chunk)`` for each chunk, in order.
    """
    chunks = _chunks(iter(paths), chunk_size)
    if joblib_backend() is None:  # here, or in forked workers: they share this folder
        yield from ordered_map(fn, chunks, jobs=jobs, salvage=salvage)
        return
    given: collections.deque[list[str]] = collections.deque()

    def absolute() -> Iterator[list[str]]:
        for chunk in chunks:
            given.append(chunk)
            yield [os.path.abspath(p) for p in chunk]

    for result in ordered_map(fn, absolute(), jobs=jobs, salvage=salvage):
        yield (given.popleft(), *result[1:])  # type: ignore[misc]


def classify_batches(
    paths: Iterable[str],
    model: Model,
    *,
    invert: bool | None = None,
    jobs: int = 1,
    batch_size: int = BATCH_SIZE,
    min_confidence: float | None = None,
) -> Iterator[list[Result]]:
    """Classify image files in order, a batch of :class:`Result` at a time.

    A file that cannot be converted is a result with its error. Each batch was converted
    as one task and shares one forward pass.

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
        Files per batch.
    min_confidence : float or None
        Results read with a lower confidence are flagged ``low confidence: C < P``.

    Yields
    ------
    list of Result
        In input order.
    """
    # The matrix products here (forward passes, resampling) are tiny: BLAS threads would
    # only spin and take CPU from the conversion (measured: 2.4x slower on 2 cores).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        for chunk in iter_converted(paths, invert=invert, jobs=jobs, chunk_size=batch_size):
            yield _predict_chunk(chunk, model, min_confidence)


def classify_paths(
    paths: Iterable[str],
    model: Model,
    *,
    invert: bool | None = None,
    jobs: int = 1,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Result]:
    """Classify image files in order, one :class:`Result` each; a bad file is an error row.

    The parameters are those of :func:`classify_batches`.

    Yields
    ------
    Result
        In input order.
    """
    batches = classify_batches(paths, model, invert=invert, jobs=jobs, batch_size=batch_size)
    for results in batches:
        yield from results


#: The flag of an image that holds several digits side by side (the digit is still given).
SEVERAL_DIGITS = "several digits: use read"

#: The error of an image the model gave no finite probabilities for (a broken model).
NO_PROBABILITY = "the model gave no valid probabilities"


def low_confidence(confidence: float, min_confidence: float | None) -> str:
    """The ``--min-confidence`` flag of a result: ``low confidence: C < P``, or ``""``.

    A confidence equal to `min_confidence` is not flagged; without it nothing is.
    """
    if min_confidence is None or confidence >= min_confidence:
        return ""
    return f"low confidence: {confidence:.4f} < {min_confidence:g}"


def _predict_chunk(chunk: Converted, model: Model, min_confidence: float | None) -> list[Result]:
    paths, counts, errors, side_by_side = chunk
    features = counts.astype(np.float64)
    ok = np.fromiter((not e for e in errors), dtype=bool, count=len(errors))
    probs = model.predict_proba(features[ok], invalid="nan") if ok.any() else np.empty((0, 10))
    digits = probs.argmax(axis=1)
    # Whole-chunk arrays as Python lists and row views: the loop below touches no numpy.
    valid = (~np.isnan(probs).any(axis=1)).tolist()  # a broken model's NaN is no prediction
    confidences = probs[np.arange(len(probs)), digits].tolist()
    read = iter(zip(digits.tolist(), confidences, valid, list(probs), strict=True))
    results = []
    several = (side_by_side > 1).tolist()
    for path, row, error, many in zip(paths, list(features), errors, several, strict=True):
        if error:
            results.append(Result(path, error=error))
            continue
        digit, confidence, is_valid, probabilities = next(read)
        if not is_valid:
            results.append(Result(path, error=NO_PROBABILITY))
            continue
        flags = [SEVERAL_DIGITS] if many else []
        flags.append(low_confidence(confidence, min_confidence))
        flag = "; ".join(f for f in flags if f)
        results.append(Result(path, digit, confidence, probabilities, features=row, flag=flag))
    return results


class CsvWriter:
    """Write :class:`Result` rows as CSV (``\n`` line ends); whole rows, flushed by :meth:`flush`.

    Columns: ``path,digit,confidence,error,flag`` and, with `probabilities`, ``p0`` ..
    ``p9``. A path with a comma, a quote or a line break is quoted (RFC 4180).
    """

    def __init__(self, stream: IO[str], probabilities: bool = False) -> None:
        self.stream = stream
        self.probabilities = probabilities
        self.writer = csv.writer(stream, lineterminator="\n")
        # The csv module quotes a line feed but not a lone carriage return with "\n" ends.
        self.quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
        header = ["path", "digit", "confidence", "error", "flag"]
        if probabilities:
            header += [f"p{d}" for d in range(10)]
        self.writer.writerow(header)
        stream.flush()

    def write(self, result: Result) -> None:
        """Write one row."""
        ok = result.digit is not None
        row = [
            result.path,
            str(result.digit) if ok else "",
            f"{result.confidence:.4f}" if ok else "",
            result.error,
            result.flag,
        ]
        if self.probabilities:
            if result.probabilities is not None:
                row += [f"{p:.4f}" for p in result.probabilities]
            else:
                row += [""] * 10
        (self.quoted if "\r" in result.path else self.writer).writerow(row)

    def flush(self) -> None:
        """Flush the rows written so far to the stream."""
        self.stream.flush()


class JsonlWriter:
    """Write :class:`Result` rows as JSON lines; whole lines, flushed by :meth:`flush`.

    Keys: ``path``, ``digit`` (null when failed), ``confidence``, ``error``, ``flag`` and,
    with `probabilities`, ``probabilities`` (ten numbers). Lines are plain JSON: a byte of
    a path that is not UTF-8 is written as the escape ``\\udcXX`` (Python's
    surrogateescape), so ``os.fsencode(json.loads(line)["path"])`` gives the name's bytes.
    """

    def __init__(self, stream: IO[str], probabilities: bool = False) -> None:
        self.stream = stream
        self.probabilities = probabilities

    def write(self, result: Result) -> None:
        """Write one line."""
        row: dict[str, Any] = {
            "path": result.path,
            "digit": result.digit,
            "confidence": None if result.confidence is None else round(result.confidence, 4),
            "error": result.error,
            "flag": result.flag,
        }
        if self.probabilities:
            row["probabilities"] = (
                None
                if result.probabilities is None
                else [round(float(p), 4) for p in result.probabilities]
            )
        self.stream.write(json_line(row))

    def flush(self) -> None:
        """Flush the lines written so far to the stream."""
        self.stream.flush()


#: The characters that surrogateescape gives the bytes of a name that are not UTF-8.
_LONE_SURROGATE = re.compile("[\udc80-\udcff]")


def json_line(row: dict[str, Any]) -> str:
    """One JSON line (with its line end): a path's bytes that are not UTF-8 as ``\\udcXX``."""
    line = json.dumps(row, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", line) + "\n"


WRITERS = {"csv": CsvWriter, "jsonl": JsonlWriter}


__all__ = [
    "BATCH_SIZE",
    "IMAGE_EXTENSIONS",
    "CsvWriter",
    "JsonlWriter",
    "WRITERS",
    "convert_chunk",
    "iter_converted",
    "json_line",
    "map_chunks",
    "read_path_list",
    "Result",
    "WalkStats",
    "classify_batches",
    "classify_paths",
    "is_image_name",
    "iter_inputs",
    "low_confidence",
]
