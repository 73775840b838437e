"""Pipeline: images or files -> Digits features (or 32x32 bitmaps), or each one's error.

The one entry to the conversion. Files are decoded one at a time; same-sized grey images
then go through every step together as a stack, one numpy operation per step for the
whole stack. A single image is a stack of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from PIL import Image

from digitcli.conversion.decode import gray_pixels, image_error, open_image, scaled
from digitcli.conversion.ink import ink_masks, ink_strength
from digitcli.conversion.nist import block_counts, nist_steps, unpack
from digitcli.conversion.pieces import digits_side_by_side, remove_specks
from digitcli.errors import ImageError

#: Images of one size are converted together in stacks of at most this many pixels.
STACK_PIXELS = 1 << 20

#: What a conversion gives for each image: its result, or the error that stopped it.
Outcome = np.ndarray | ImageError


def rows_from_inks(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every step after the ink map, for a stack of same-sized ink maps.

    Parameters
    ----------
    ink : numpy.ndarray
        ``(n, h, w)`` ink strength 0..1 (:func:`~digitcli.conversion.ink.ink_strength`).

    Returns
    -------
    rows : numpy.ndarray
        The NIST bitmaps, packed ``(n, 32)`` (:func:`~digitcli.conversion.nist.pack`).
    found : numpy.ndarray
        bool ``(n,)``: False for a blank image (``no digit found``).
    """
    flat, thresholds, _, mask = ink_masks(ink)
    return nist_steps(flat, mask, thresholds)


def rows_from_masks(
    ink: np.ndarray, mask: np.ndarray, thresholds: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every step after thresholding, for a stack of ink maps and their (raw) masks.

    For ink maps that need no ground removal (drawn glyphs): the masks are cleaned of
    specks, then go through NIST's steps.

    Parameters
    ----------
    ink : numpy.ndarray
        ``(n, h, w)`` ink strength.
    mask : numpy.ndarray
        bool ``(n, h, w)`` ink masks, before :func:`~digitcli.conversion.pieces.remove_specks`.
    thresholds : float or numpy.ndarray
        The ink level of each mask.

    Returns
    -------
    rows, found
        As :func:`rows_from_inks`.
    """
    return nist_steps(ink, remove_specks(mask), thresholds)


def features_of(rows: np.ndarray) -> np.ndarray:
    """Digits features of packed NIST bitmaps: float64 ``(n, 64)``, values 0..16."""
    return block_counts(rows).reshape(-1, 64).astype(np.float64)


def _features(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return features_of(rows)


def _bitmaps(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return unpack(rows)


def _features_and_counts(rows: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, int]]:
    return list(zip(features_of(rows), digits_side_by_side(mask).tolist(), strict=True))


def _convert_grays(
    grays: Iterable[tuple[int, np.ndarray]],
    out: list[Outcome],
    invert: bool | None,
    finish: Callable[[np.ndarray, np.ndarray], Any],
) -> None:
    """Convert ``(index, grey image)`` pairs into ``out[index]``, same-sized ones as stacks.

    The grey images are :func:`~digitcli.conversion.decode.gray_pixels`. Images wait by
    size and type; a full stack (about :data:`STACK_PIXELS` pixels) is converted at once,
    so few decoded images are held at a time. `finish` turns a stack's packed bitmaps and
    cleaned masks into what is wanted of each image.
    """

    def convert(part: list[tuple[int, np.ndarray]]) -> None:
        try:
            ink = ink_strength(scaled(np.stack([gray for _, gray in part])), invert)
            flat, thresholds, _, mask = ink_masks(ink)
            rows, found = nist_steps(flat, mask, thresholds)
            results = finish(rows, mask)
        except Exception as exc:  # noqa: BLE001 - should not happen: say so per file
            for i, _ in part:
                out[i] = image_error(exc)
            return
        for (i, _), result, ok in zip(part, results, found, strict=True):
            out[i] = result if ok else ImageError("no digit found")

    waiting: dict[tuple[object, ...], list[tuple[int, np.ndarray]]] = {}
    for i, gray in grays:
        key = (*gray.shape, gray.dtype)
        part = waiting.setdefault(key, [])
        part.append((i, gray))
        if len(part) * gray.size >= STACK_PIXELS:
            convert(waiting.pop(key))
    for part in waiting.values():
        convert(part)


def _decoded(
    sources: Iterable[Any],
    decode: Callable[[Any], np.ndarray],
    invert: bool | None,
    finish: Callable[[np.ndarray, np.ndarray], Any],
) -> list[Outcome]:
    """Decode each source to grey levels (its error on failure), then convert as stacks."""
    out: list[Outcome] = []

    def grays() -> Iterator[tuple[int, np.ndarray]]:
        for i, source in enumerate(sources):
            out.append(ImageError("not converted"))
            try:
                gray = decode(source)
            except Exception as exc:  # noqa: BLE001 - that image's error, never a crash
                out[i] = image_error(exc)
                continue
            yield i, gray

    _convert_grays(grays(), out, invert, finish)
    return out


def _file_grays(path: str) -> np.ndarray:
    return gray_pixels(open_image(path))


def features_from_paths(paths: Iterable[str], *, invert: bool | None = None) -> list[Outcome]:
    """Digits features of image files, converted in stacks of same-sized images.

    Each file is decoded on its own; then the images of one size go through the
    conversion together. A file's result does not depend on the others.

    Parameters
    ----------
    paths : iterable of str
        Image files.
    invert : bool or None
        Polarity, see :func:`~digitcli.conversion.ink.ink_strength`.

    Returns
    -------
    list of numpy.ndarray or ImageError
        For each path, its float64 ``(64,)`` features (0..16) or the error that stopped it.
    """
    return _decoded(paths, _file_grays, invert, _features)


def features_from_images(
    images: Iterable[Image.Image], *, invert: bool | None = None
) -> list[Outcome]:
    """Digits features of decoded images, same-sized ones converted together as stacks.

    Parameters
    ----------
    images : iterable of PIL.Image.Image
        The images (consumed lazily).
    invert : bool or None
        Polarity, see :func:`~digitcli.conversion.ink.ink_strength`.

    Returns
    -------
    list of numpy.ndarray or ImageError
        For each image, its float64 ``(64,)`` features or ``no digit found``.
    """
    return _decoded(images, gray_pixels, invert, _features)


def features_and_counts_from_paths(
    paths: Iterable[str], *, invert: bool | None = None
) -> list[tuple[np.ndarray, int] | ImageError]:
    """As :func:`features_from_paths`, with the digits side by side in each image.

    Each result is ``(features, count)``: `count` is
    :func:`~digitcli.conversion.pieces.digits_side_by_side` of the image's cleaned mask
    (1 for one digit; more when the image holds a number: ``classify`` flags it).
    """
    return _decoded(paths, _file_grays, invert, _features_and_counts)


def bitmaps_from_paths(paths: Iterable[str], *, invert: bool | None = None) -> list[Outcome]:
    """The NIST 32x32 bitmaps of image files (every step before the counting).

    As :func:`features_from_paths`, but each result is bool ``(32, 32)``.
    """
    return _decoded(paths, _file_grays, invert, _bitmaps)


def bitmaps_from_images(
    images: Iterable[Image.Image], *, invert: bool | None = None
) -> list[Outcome]:
    """The NIST 32x32 bitmaps of decoded images (every step before the counting).

    As :func:`features_from_images`, but each result is bool ``(32, 32)``.
    """
    return _decoded(images, gray_pixels, invert, _bitmaps)
