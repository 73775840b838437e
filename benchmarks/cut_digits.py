"""Accuracy on digits cut from handwritten amounts (a proxy for reading cheque digits).

Usage: python benchmarks/cut_digits.py FOLDER [--model PATH] [--errors N]

FOLDER holds number images and a ``labels.csv`` with columns ``file,number`` (for example
../shared/data/dev/numbers-cheques). Each image is decoded and its ink found as classify does
(``ink_strength``, ``ink_masks``); the raw mask (flat ink above the threshold) is split into
8-connected pieces. Tiny pieces and pieces much shorter than the tallest (dots, commas,
dashes: under 45% of its height) are dropped, and pieces that overlap horizontally by half
the narrower one's width are merged (a 5's flag, a broken stroke). Where as many pieces are
left as the number has digits, each piece alone (its mask; the whole ink map kept) goes
through the NIST steps and the model, and is compared with its digit. Images that do not cut
into that many pieces (touching digits, a broken digit) are counted but not scored.

Prints the images used, the digit accuracy, the accuracy per digit and the commonest
confusions. It measures only: nothing here is fitted on the images.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

import numpy as np

from digitcli import model as model_io
from digitcli.conversion.decode import gray_pixels, open_image, scaled
from digitcli.conversion.ink import ink_masks, ink_strength
from digitcli.conversion.pieces import piece_table
from digitcli.conversion.pipeline import features_of, rows_from_masks

#: Pieces under this fraction of the largest piece's size are dust.
MIN_SIZE = 0.03
#: Pieces lower than this fraction of the tallest are dots, commas and dashes.
MIN_HEIGHT = 0.45
#: Pieces overlapping horizontally by this share of the narrower one are one digit.
MERGE_OVERLAP = 0.5


def cut_features(path: Path) -> list[np.ndarray]:
    """The features of each digit cut from the number image at `path`, left to right."""
    gray = scaled(gray_pixels(open_image(path)))
    ink = ink_strength(gray[None])
    flat, thresholds, _, _ = ink_masks(ink)
    raw = flat > thresholds[:, None, None]
    table = piece_table(raw)
    if not len(table):
        return []
    height = table.bottom - table.top
    keep = (table.size >= MIN_SIZE * table.size.max()) & (height >= MIN_HEIGHT * height.max())
    groups: list[list[int]] = []
    boxes: list[list[int]] = []  # left, right of each group
    for i in sorted(np.flatnonzero(keep), key=lambda i: table.left[i]):
        left, right = int(table.left[i]), int(table.right[i])
        for g, box in enumerate(boxes):
            overlap = min(right, box[1]) - max(left, box[0])
            narrower = min(right - left, box[1] - box[0])
            if overlap >= MERGE_OVERLAP * narrower:
                groups[g].append(i)
                boxes[g] = [min(left, box[0]), max(right, box[1])]
                break
        else:
            groups.append([i])
            boxes.append([left, right])
    order = np.argsort([box[0] for box in boxes])
    labels = table.labels()
    out = []
    for g in order:
        mask = np.isin(labels, groups[g])
        rows, found = rows_from_masks(flat, mask, thresholds)
        out.append(features_of(rows)[0] if found[0] else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--errors", type=int, default=15, help="confusion pairs to list")
    args = parser.parse_args()
    model = model_io.load(model_io.resolve_model_path(args.model))
    with open(args.folder / "labels.csv", newline="") as fh:
        items = [(row["file"], row["number"]) for row in csv.DictReader(fh)]
    truth: list[int] = []
    rows: list[np.ndarray] = []
    used = 0
    for name, number in items:
        cut = cut_features(args.folder / name)
        if len(cut) != len(number) or any(r is None for r in cut):
            continue
        used += 1
        rows.extend(cut)
        truth.extend(int(c) for c in number)
    y = np.array(truth)
    predicted, _ = model.predict(np.vstack(rows))
    right = predicted == y
    print(f"images {used} of {len(items)} cut into their digits; digits {len(y)}")
    print(f"digit accuracy {right.mean():.4f}")
    print(
        "per digit: "
        + " ".join(f"{d}:{right[y == d].mean():.3f}({(y == d).sum()})" for d in range(10))
    )
    pairs = Counter(zip(y[~right].tolist(), predicted[~right].tolist(), strict=True))
    print(
        "confusions (true->read: n): "
        + ", ".join(f"{t}->{p}: {n}" for (t, p), n in pairs.most_common(args.errors))
    )


if __name__ == "__main__":
    main()
