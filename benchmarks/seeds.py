"""How much a training recipe's accuracy owes to its seed: the ensemble fitted with several seeds.

Usage: python benchmarks/seeds.py [SUITE_DIR...] [--seeds 0 1 2 3] [--synthetic N] [--ensemble K]

For each seed it fits the recipe (the defaults of ``digitcli train``, with the options given)
on the 80% training part of Digits, as ``digitcli train --seed S`` does, and prints the
accuracy on the held-out test split and on each labelled image folder SUITE_DIR/<digit>/<file>
(through the classify conversion), then the mean, minimum and maximum over the seeds. A
change of recipe that moves a figure by less than the spread between seeds is not a finding.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from pathlib import Path

import numpy as np

from digitcli import datasets, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--jobs", type=int, default=-1, help="joblib workers over the members")
    for field in dataclasses.fields(training.Recipe):
        if field.name != "hidden_layers":
            parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default))
    args = parser.parse_args()
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(training.Recipe)
        if getattr(args, f.name, None) is not None
    }
    for name, value in given.items():
        if not math.isfinite(value):
            parser.error(f"--{name.replace('_', '-')} must be finite")
        low = (
            0
            if name in ("alpha", "augment", "synthetic", "anneal_epochs", "kernel_weight")
            else 1e-12
        )
        if value < low:
            parser.error(f"--{name.replace('_', '-')} must be {'>= 0' if low == 0 else '> 0'}")
    if given.get("kernel_weight", 0) >= 1:
        parser.error("--kernel-weight must be < 1")
    recipe = dataclasses.replace(training.Recipe(), **given)
    print(f"recipe: {recipe}")

    X, y, _ = datasets.digits()
    train_idx, test_idx = training.split_indices(y)
    names = ["test split", *(s.name for s in args.suites)]
    widths = [max(12, len(n)) for n in names]

    def line(label: str, values: list[float]) -> str:
        return f"{label:>4} " + " ".join(
            f"{v:>{w}.4f}" for v, w in zip(values, widths, strict=True)
        )

    print(
        f"{'seed':>4} "
        + " ".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))
        + "  fit s"
    )
    table = []
    for seed in args.seeds:
        start = time.perf_counter()
        model = training.fit_model(X[train_idx], y[train_idx], recipe, seed, args.jobs)
        fit_s = time.perf_counter() - start
        row = [float((model.predict(X[test_idx])[0] == y[test_idx]).mean())]
        row += [v["accuracy"] for v in training.validate(model, [str(s) for s in args.suites])]
        table.append(row)
        print(line(str(seed), row) + f" {fit_s:>6.0f}", flush=True)
    a = np.array(table)
    for label, values in (("mean", a.mean(0)), ("min", a.min(0)), ("max", a.max(0))):
        print(line(label, list(values)))
    if len(args.seeds) > 1:
        print(line("sd", [statistics.stdev(col) for col in a.T]))


if __name__ == "__main__":
    main()
