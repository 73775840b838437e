"""Data sources as values: each loader returns ``(X, y, source)``.

``X`` is float64 ``(n, 64)`` (Digits features, whole numbers 0..16), ``y`` int64 ``(n,)``
(digits 0..9) and ``source`` a :class:`Source` that says where they came from: its kind,
path, images per digit and a content hash. Training takes such values (see
:func:`digitcli.training.train`) and records each one's :class:`Source` in the model.

The sources are scikit-learn's Digits (:func:`digits`), an optdigits CSV
(:func:`optdigits_csv`), a labelled image folder ``DIR/<digit>/<file>`` put through the
classify conversion (:func:`labelled_folder`) and the synthetic pen-stroke glyphs
(:func:`synthetic`).

scikit-learn, hashlib and csv are imported inside the functions that need them, never at
module import: :mod:`digitcli.training` imports this module, and the command line imports
that, so ``classify`` would pay for them at every start.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from digitcli.errors import DataError

__all__ = [
    "Dataset",
    "Source",
    "content_hash",
    "digits",
    "iter_labelled_images",
    "labelled_folder",
    "load_optdigits_csv",
    "optdigits_csv",
    "synthetic",
]


@dataclass(frozen=True)
class Source:
    """Where a data set came from, and a fingerprint of what it held.

    Parameters
    ----------
    kind : str
        ``"digits"``, ``"optdigits-csv"``, ``"images"`` or ``"synthetic"``.
    name : str
        A readable description, e.g. ``"sklearn.datasets.load_digits"``.
    path : str or None
        The file or folder read (``None`` for Digits and the synthetic glyphs).
    counts : tuple of int
        Images per digit, 0 to 9.
    sha256 : str
        :func:`content_hash` of the data.
    skipped : int
        Images that could not be converted and are not in the data (labelled folders).
    """

    kind: str
    name: str
    path: str | None
    counts: tuple[int, ...]
    sha256: str
    skipped: int = 0

    @property
    def n(self) -> int:
        """Images in the data set."""
        return sum(self.counts)

    def to_dict(self) -> dict[str, Any]:
        """The source as plain JSON values (as recorded in a model's metadata)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "n": self.n,
            "counts": list(self.counts),
            "sha256": self.sha256,
            "skipped": self.skipped,
        }


#: What every loader returns: features, labels and their source.
Dataset = tuple[np.ndarray, np.ndarray, Source]


def content_hash(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of the data: `X` as little-endian float64, then `y` as little-endian int64.

    The same images and labels in the same order give the same hash whatever the arrays'
    dtypes, so a model's metadata tells whether two trainings saw the same data.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, 64)`` features.
    y : numpy.ndarray
        ``(n,)`` labels.

    Returns
    -------
    str
        64 hex digits.
    """
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(X, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return digest.hexdigest()


def _dataset(
    X: np.ndarray, y: np.ndarray, kind: str, name: str, path: str | None, skipped: int = 0
) -> Dataset:
    X = np.asarray(X, dtype=np.float64).reshape(-1, 64)
    y = np.asarray(y, dtype=np.int64)
    counts = tuple(int(c) for c in np.bincount(y, minlength=10))
    return X, y, Source(kind, name, path, counts, content_hash(X, y), skipped)


def digits() -> Dataset:
    """scikit-learn's bundled Digits: 1797 images of 13 writers.

    Returns
    -------
    X, y, source : numpy.ndarray, numpy.ndarray, Source
        float64 ``(1797, 64)``, int64 ``(1797,)`` and the source (kind ``"digits"``).
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return _dataset(X, y, "digits", "sklearn.datasets.load_digits", None)


def digits_test_split(test_index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The part of Digits a model held out in training (its recorded ``test_index``).

    Parameters
    ----------
    test_index : numpy.ndarray or None
        The model's recorded test rows of Digits.

    Returns
    -------
    X, y : numpy.ndarray
        The held-out rows and their labels.

    Raises
    ------
    DataError
        If the model records no test split, or one that does not fit Digits.
    """
    if test_index is None:
        raise DataError("this model records no Digits test split: use --data or --images")
    X, y, _ = digits()
    if test_index.max(initial=0) >= len(y):
        raise DataError("the model's test split does not fit Digits")
    return X[test_index], y[test_index]


def optdigits_csv(path: str | os.PathLike[str]) -> Dataset:
    """An optdigits-format CSV (:func:`load_optdigits_csv`) as a data set.

    Parameters
    ----------
    path : str or path-like
        The CSV file.

    Returns
    -------
    X, y, source : numpy.ndarray, numpy.ndarray, Source
        Kind ``"optdigits-csv"``.

    Raises
    ------
    DataError
        If the file cannot be read or a line is malformed.
    """
    X, y = load_optdigits_csv(path)
    return _dataset(X, y, "optdigits-csv", f"optdigits CSV {os.fspath(path)}", os.fspath(path))


def labelled_folder(
    path: str | os.PathLike[str], *, invert: bool | None = None, jobs: int = 1
) -> Dataset:
    """The images of a labelled folder ``path/<digit>/<file>``, through the classify conversion.

    Images that cannot be converted (unreadable, no digit found) are left out and counted
    in ``source.skipped``. The rows are in the order of :func:`iter_labelled_images`.

    Parameters
    ----------
    path : str or path-like
        The folder.
    invert : bool or None
        Polarity for the conversion (``None``: detected per image).
    jobs : int
        Worker processes for the conversion (1 = convert here).

    Returns
    -------
    X, y, source : numpy.ndarray, numpy.ndarray, Source
        Kind ``"images"``.

    Raises
    ------
    DataError
        If `path` is not a folder, has no ``0`` .. ``9`` sub-folders, or holds no image
        that converts.
    """
    from digitcli.batch import iter_converted

    root = os.fspath(path)
    if not os.path.isdir(root):
        raise DataError(f"{root} is not a folder")
    items = list(iter_labelled_images(root))
    if not items:
        raise DataError(f"no images found in {root} (expected {root}/<digit>/<file>)")
    features = np.zeros((len(items), 64), dtype=np.float64)
    converted = np.zeros(len(items), dtype=bool)
    done = 0
    for _, chunk, errors, _ in iter_converted([p for p, _ in items], invert=invert, jobs=jobs):
        features[done : done + len(chunk)] = chunk
        converted[done : done + len(chunk)] = [not error for error in errors]
        done += len(chunk)
    labels = np.array([d for _, d in items], dtype=np.int64)
    skipped = int((~converted).sum())
    if not converted.any():
        raise DataError(f"none of the {len(items)} images in {root} could be converted")
    return _dataset(
        features[converted], labels[converted], "images", f"images in {root}", root, skipped
    )


#: Seeds of the synthetic glyphs start here (sample_images/ uses 1000-1099).
SYNTH_SEED = 1_000_000
#: Synthetic glyphs are drawn on a square of this many pixels (drawing them at 28, 40 and
#: 64 pixels in turn made no difference).
SYNTH_SIZE = 64
#: Every CUT_EVERY-th glyph is drawn small and soft, as cut from a scanned amount
#: (:func:`digitcli.synth.cut_glyph`); the others at :data:`SYNTH_SIZE`.
CUT_EVERY = 4


@functools.lru_cache(maxsize=4)
def synthetic_data(per_digit: int) -> tuple[np.ndarray, np.ndarray]:
    """Pen-stroke digits drawn by :mod:`digitcli.synth` and converted like real images.

    Digits' 13 writers close their 4s, cross their 7s and give their 2s a flat base; these
    glyphs add the other common shapes (open 4s, plain 7s, curled 2s, serifed 1s) and those
    of handwritten amounts (the ``"cheque"`` set of :func:`digitcli.synth.render_digit`:
    continental 1s, 7s crossed through the stem, looped 2s) in random pen widths, slants and
    wobbles. Every :data:`CUT_EVERY`-th is drawn small and soft, as a digit cut from a
    scanned amount (:func:`digitcli.synth.cut_glyph`). The set is fixed (seeds from
    :data:`SYNTH_SEED`), so every fit with the same `per_digit` sees the same glyphs; it is
    cached per process.

    Parameters
    ----------
    per_digit : int
        Glyphs per digit.

    Returns
    -------
    X, y : numpy.ndarray
        float64 ``(10 * per_digit, 64)`` features and int64 labels.
    """
    from digitcli.conversion.pipeline import features_from_images
    from digitcli.synth import cut_glyph, render_digit

    y = np.repeat(np.arange(10, dtype=np.int64), per_digit)
    glyphs = (
        cut_glyph(int(digit), seed=SYNTH_SEED + i)
        if i % CUT_EVERY == CUT_EVERY - 1
        else render_digit(
            int(digit), seed=SYNTH_SEED + i, size=(SYNTH_SIZE, SYNTH_SIZE), styles="cheque"
        )
        for i, digit in enumerate(y)
    )
    features = features_from_images(glyphs)
    if not all(isinstance(row, np.ndarray) for row in features):
        raise ValueError("a synthetic glyph has no ink")  # the generator always draws some
    return np.vstack(features), y


#: Seeds of the synthetic numbers whose cut pieces training adds start here.
PIECE_SEED = 2_000_000
#: A candidate piece is a digit's when both its sides are within this share of the digit
#: height of the digit's ink.
PIECE_TOLERANCE = 0.12
#: Shares of the synthetic numbers with each condition (as benchmarks/make_strings.py).
PIECE_SHARES = {"touching": 0.35, "guide_line": 0.35, "texture": 0.4, "degrade": 0.35}


def _piece_number(index: int) -> tuple[str, dict[str, Any]]:
    """The text and :func:`~digitcli.synth.number_sample` options of number `index`."""
    from digitcli.synth import END_MARKS

    rng = np.random.default_rng([PIECE_SEED, index])
    length = int(rng.integers(3, 8))
    text = "".join(str(d) for d in rng.integers(0, 10, size=length))
    if rng.random() < 0.3:  # a decimal or thousands separator
        at = int(rng.integers(1, length))
        text = text[:at] + str(rng.choice(list(".,'"))) + text[at:]
    if rng.random() < 0.2:
        text += str(rng.choice(list(END_MARKS)))
    digit_pos = [i for i, c in enumerate(text) if c.isdigit()]
    pairs = [k for k in range(length - 1) if digit_pos[k + 1] == digit_pos[k] + 1]
    touching = tuple(k for k in pairs if rng.random() < PIECE_SHARES["touching"])
    lo = float(rng.uniform(-0.15, 0.35))
    options = {
        "seed": PIECE_SEED + index,
        "height": int(rng.integers(20, 51)),
        "gap": (lo, lo + 0.05),
        "touching": touching,
        "guide_line": bool(rng.random() < PIECE_SHARES["guide_line"]),
        "texture": bool(rng.random() < PIECE_SHARES["texture"]),
        "degrade": bool(rng.random() < PIECE_SHARES["degrade"]),
        "styles": "cheque",
    }
    return text, options


def number_pieces(index: int) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of synthetic number `index` as the reader cuts them, with their digits.

    The number (3 to 7 digits, some with a separator, an end mark, touching pairs, a guide
    line, a security ground or a degraded scan; the ``"cheque"`` shapes) is drawn by
    :func:`digitcli.synth.number_sample` and laid out by :func:`digitcli.segment.layout` as
    ``digitcli read`` does. Of the candidate pieces whose left and right sides are both
    within :data:`PIECE_TOLERANCE` of the digit height of a digit's ink, the closest is
    that digit (none if there is none): a piece as the reader cuts it, with a neighbour's
    fragment, a seam through a stroke or a guide line's remnant. The same `index` gives
    the same pieces.

    Returns
    -------
    X, y : numpy.ndarray
        uint8 ``(n, 64)`` features and int64 labels, left to right (at most one piece per
        digit).
    """
    from digitcli.conversion.decode import gray_pixels, scaled
    from digitcli.segment import layout
    from digitcli.synth import number_sample

    text, options = _piece_number(index)
    img, spans = number_sample(text, **options)
    lay = layout(scaled(gray_pixels(img)))
    digits = [int(c) for c in text if c.isdigit()]
    if lay is None:
        return np.zeros((0, 64), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    row_of = np.cumsum(lay.found) - 1
    tol = PIECE_TOLERANCE * options["height"]
    rows, labels = [], []
    for digit, (lo, hi) in zip(digits, spans, strict=True):
        near = [
            (abs(left - lo) + abs(right - hi), k)
            for k, (_, _, left, right) in enumerate(lay.boxes)
            if lay.found[k] and abs(left - lo) <= tol and abs(right - hi) <= tol
        ]
        if near:
            rows.append(row_of[min(near)[1]])
            labels.append(digit)
    X = lay.features[np.asarray(rows, dtype=np.intp)].astype(np.uint8)
    return X, np.asarray(labels, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def piece_data(numbers: int) -> tuple[np.ndarray, np.ndarray]:
    """The cut pieces (:func:`number_pieces`) of synthetic numbers ``0 .. numbers - 1``.

    Returns
    -------
    X, y : numpy.ndarray
        float64 ``(n, 64)`` features and int64 labels; cached per process.
    """
    parts = [number_pieces(i) for i in range(numbers)]
    X = np.vstack([p[0] for p in parts]).astype(np.float64)
    return X, np.concatenate([p[1] for p in parts])


def synthetic(per_digit: int) -> Dataset:
    """The synthetic pen-stroke glyphs training adds (:func:`synthetic_data`) as a dataset.

    Parameters
    ----------
    per_digit : int
        Glyphs per digit (1 or more).

    Returns
    -------
    X, y, source : numpy.ndarray, numpy.ndarray, Source
        float64 ``(10 * per_digit, 64)``; kind ``"synthetic"``.
    """
    if per_digit < 1:
        raise ValueError(f"per_digit must be 1 or more, got {per_digit}")
    X, y = synthetic_data(per_digit)
    return _dataset(X, y, "synthetic", f"digitcli.synth glyphs, {per_digit} per digit", None)


def pieces(numbers: int) -> Dataset:
    """The cut pieces of synthetic numbers training adds (:func:`piece_data`) as a dataset.

    Parameters
    ----------
    numbers : int
        Synthetic numbers cut (1 or more).

    Returns
    -------
    X, y, source : numpy.ndarray, numpy.ndarray, Source
        float64 ``(n, 64)``; kind ``"synthetic"``.
    """
    if numbers < 1:
        raise ValueError(f"numbers must be 1 or more, got {numbers}")
    X, y = piece_data(numbers)
    name = f"digitcli.synth numbers cut by digitcli.segment, {numbers} numbers"
    return _dataset(X, y, "synthetic", name, None)


def glyph_data(per_digit: int, numbers: int) -> tuple[np.ndarray, np.ndarray]:
    """The glyphs (:func:`synthetic_data`) then the cut pieces (:func:`piece_data`) a fit adds.

    Parameters
    ----------
    per_digit, numbers : int
        Glyphs per digit and synthetic numbers cut (0 = none of them).

    Returns
    -------
    X, y : numpy.ndarray
        float64 ``(n, 64)`` features and int64 labels.
    """
    parts = [synthetic_data(per_digit)] if per_digit > 0 else []
    if numbers > 0:
        parts.append(piece_data(numbers))
    if not parts:
        return np.zeros((0, 64)), np.zeros(0, dtype=np.int64)
    if len(parts) == 1:
        return parts[0]
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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
    from digitcli.batch import iter_inputs

    labels = [d for d in range(10) if os.path.isdir(os.path.join(root, str(d)))]
    if not labels:
        raise DataError(f"{root} has no digit folders (expected {root}/0 .. {root}/9)")
    for d in labels:
        for path in iter_inputs([os.path.join(root, str(d))]):
            yield path, d


#: The longest line of an optdigits CSV read (a row is 65 small numbers: under 300).
MAX_CSV_LINE = 4096


def _bounded_lines(fh: Any, path: str | os.PathLike[str]) -> Iterator[str]:
    """The lines of a text file, refusing one longer than :data:`MAX_CSV_LINE` unread."""
    for lineno in itertools.count(1):
        line = fh.readline(MAX_CSV_LINE + 1)
        if not line:
            return
        if len(line) > MAX_CSV_LINE:
            raise DataError(f"{path}, line {lineno}: longer than {MAX_CSV_LINE} characters")
        yield line


def load_optdigits_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read the UCI optdigits format: 64 integers 0..16 then the label, comma separated.

    A header line (a first line that is not all numbers) and blank lines are skipped; a
    UTF-8 byte-order mark is ignored.

    Parameters
    ----------
    path : str or path-like
        The CSV file (``optdigits.tes``, ``optdigits.tra`` or the same layout).

    Returns
    -------
    X, y : numpy.ndarray
        ``(n, 64)`` float64 and ``(n,)`` int64.

    Raises
    ------
    DataError
        Naming the first bad line.
    """
    import array
    import csv

    rows = array.array("B")  # 65 bytes a row, not 65 Python ints
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for lineno, fields in enumerate(csv.reader(_bounded_lines(fh, path)), start=1):
                if not fields or all(not f.strip() for f in fields):
                    continue
                try:
                    values = [int(f) for f in fields]
                except ValueError:
                    if lineno == 1:
                        continue  # a header
                    raise DataError(f"{path}, line {lineno}: not all integers") from None
                if len(values) != 65:
                    raise DataError(
                        f"{path}, line {lineno}: {len(values)} values, expected 64 features "
                        "and a label"
                    )
                if min(values[:64]) < 0 or max(values[:64]) > 16:
                    raise DataError(f"{path}, line {lineno}: feature values must be 0..16")
                if not 0 <= values[64] <= 9:
                    raise DataError(f"{path}, line {lineno}: label {values[64]} is not a digit")
                rows.extend(values)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text CSV file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: {exc}") from None
    if not rows:
        raise DataError(f"{path} holds no data rows")
    data = np.frombuffer(rows, dtype=np.uint8).reshape(-1, 65).astype(np.int64)
    return data[:, :64].astype(np.float64), data[:, 64]
