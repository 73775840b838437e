"""Accuracy and speed of the real classify path on labelled image folders.

Usage: python benchmarks/accuracy.py SUITE_DIR... [--model PATH] [--repeat 3]

Each SUITE_DIR is laid out as SUITE_DIR/<digit>/<file> (for example ../shared/data/dev/*).
For each suite it prints the accuracy, the files that failed to convert, and the conversion
speed (decode + conversion, one core, in batches as classify does, median of --repeat
runs), then the same for 28x28 PNGs made here (also one at a time), whose per-image cost the
conversion issue bounds at 1 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from digitcli import model as model_io
from digitcli.batch import BATCH_SIZE, classify_paths
from digitcli.conversion.pipeline import features_from_paths
from digitcli.datasets import iter_labelled_images
from digitcli.synth import render_digit


def conversion_ms(paths: list[str], repeat: int, batch: int = BATCH_SIZE) -> float:
    """Median ms per file to decode and convert `paths` on one core, as classify does.

    classify converts its files in batches of BATCH_SIZE (:func:`features_from_paths`); with
    ``batch=1`` each file is converted on its own (a stack of one).
    """
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        if batch == 1:
            for p in paths:
                features_from_paths([p])
        else:
            for i in range(0, len(paths), batch):
                features_from_paths(paths[i : i + batch])
        runs.append((time.perf_counter() - start) / len(paths) * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="+", type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = model_io.load(model_io.resolve_model_path(args.model))
    print(f"{'suite':<16} {'n':>5} {'accuracy':>9} {'failed':>7} {'ms/image':>9} {'images/s':>9}")
    for suite in args.suites:
        items = list(iter_labelled_images(suite))
        paths = [p for p, _ in items]
        truth = np.array([d for _, d in items])
        results = list(classify_paths(paths, model))
        predicted = np.array([-1 if r.digit is None else r.digit for r in results])
        failed = sum(bool(r.error) for r in results)
        ms = conversion_ms(paths, args.repeat)
        accuracy = float((predicted == truth).mean())
        print(
            f"{suite.name:<16} {len(paths):>5} {accuracy:>9.3f} {failed:>7} {ms:>9.3f} "
            f"{1000 / ms:>9.0f}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        pngs = []
        for i in range(500):
            path = Path(tmp) / f"{i}.png"
            render_digit(i % 10, seed=i, size=(28, 28)).convert("L").save(path)
            pngs.append(str(path))
        ms = conversion_ms(pngs, args.repeat)
        alone = conversion_ms(pngs, args.repeat, batch=1)
        print(
            f"28x28 PNG conversion (decode included, one core): {ms:.3f} ms/image in batches "
            f"of {BATCH_SIZE} as classify does, {alone:.3f} ms/image one at a time (goal <= 1 ms)"
        )


if __name__ == "__main__":
    main()
