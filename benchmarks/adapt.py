"""Adapting to a writer's style: held-out accuracy without and with ``train --images``.

Usage: python benchmarks/adapt.py [--per-digit 60] [--holdout 0.5] [--weight 1] [--folds 2]
                                  [--jobs -1] [--keep DIR]

It writes a labelled folder DIR/<digit>/<n>.png of digits in a style Digits lacks (written as
seven straight segments, :func:`digitcli.synth.segment_digit`), then fits the default recipe
of ``digitcli train`` twice with the same seed: on Digits alone ("before"), and with the
folder added as ``--images`` does, a stratified ``--holdout`` part of it kept out ("after").
It prints both models' accuracy on that held-out part (and the shipped model's), and on
Digits' test split. Cross-validation does not change the fitted model, only the figure
reported beside it, so ``--folds`` defaults to 2 to save time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from digitcli import datasets, training
from digitcli import model as model_io
from digitcli.synth import segment_digit

#: Seeds of the style folder's digits start here (tests use 0..).
STYLE_SEED = 500_000


def write_style(root: Path, per_digit: int) -> Path:
    for d in range(10):
        (root / str(d)).mkdir(parents=True, exist_ok=True)
        for i in range(per_digit):
            segment_digit(d, seed=STYLE_SEED + d * per_digit + i).save(
                root / str(d) / f"{i:03d}.png"
            )
    return root


def accuracy(model: model_io.Model, X: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(X)[0] == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-digit", type=int, default=60, help="style images per digit")
    parser.add_argument("--holdout", type=float, default=0.5, help="share held out per digit")
    parser.add_argument("--weight", type=float, default=1.0, help="--images-weight")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=-1, help="joblib workers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the style folder here (else a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = write_style(args.keep or Path(tmp) / "style", args.per_digit)
        user = datasets.labelled_folder(root, jobs=2)
    X, y, source = user
    _, held = training.holdout_indices(y, args.holdout)
    print(
        f"style folder: {source.n} images ({source.skipped} unreadable), "
        f"{len(y) - len(held)} fitted, {len(held)} held out; sha256 {source.sha256[:12]}"
    )
    shipped = model_io.load(model_io.default_model_path())
    print(f"shipped model on the held-out part: {accuracy(shipped, X[held], y[held]):.4f}")

    recipe = training.Recipe()
    print(f"recipe: {recipe.describe()} kernel_weight={recipe.kernel_weight:g}")
    common = {"seed": args.seed, "folds": args.folds, "n_jobs": args.jobs}
    started = time.perf_counter()
    before = training.train(recipe, **common)
    mid = time.perf_counter()
    after = training.train(
        recipe,
        **common,
        images=[user],
        images_weight=args.weight,
        holdout_images=args.holdout,
        baseline=before.model,
    )
    done = time.perf_counter()
    [record] = [s for s in after.sources if s["role"] == "images"]
    print(f"{'':28}{'held-out style':>16}{'Digits test':>13}{'fit time':>10}")
    print(
        f"{'before (Digits only)':28}{record['baseline_accuracy']:>16.4f}"
        f"{before.test_accuracy:>13.4f}{mid - started:>9.0f}s"
    )
    print(
        f"{f'after (--images, weight {args.weight:g})':28}{record['holdout_accuracy']:>16.4f}"
        f"{after.test_accuracy:>13.4f}{done - mid:>9.0f}s"
    )


if __name__ == "__main__":
    main()
