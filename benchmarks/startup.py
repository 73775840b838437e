"""Start-up cost: `digitcli classify one.png` against `python -c "import numpy, PIL.Image, click"`.

Usage: python benchmarks/startup.py [--runs 7]

Runs the two commands alternately (so machine noise hits both alike), prints each one's median
wall time and their ratio. The goal: the ratio stays at or below 1.3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _common import digitcli_exe, wall

from digitcli.synth import render_digit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    exe = digitcli_exe()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "one.png"
        render_digit(5, size=(28, 28)).save(image)
        classify = [exe, "classify", str(image), "-q"]
        baseline = [sys.executable, "-c", "import numpy, PIL.Image, click"]
        wall(classify), wall(baseline)  # warm the file cache
        times: dict[str, list[float]] = {"classify": [], "baseline": []}
        for _ in range(args.runs):
            times["classify"].append(wall(classify))
            times["baseline"].append(wall(baseline))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"runs: {args.runs} each, alternating")
    print(f"digitcli classify one.png        median {med['classify'] * 1000:7.1f} ms")
    print(f"python -c 'import numpy, PIL.Image, click' median {med['baseline'] * 1000:7.1f} ms")
    print(f"ratio: {med['classify'] / med['baseline']:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
