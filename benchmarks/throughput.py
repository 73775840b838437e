"""Batch classify against plain Pillow decode loops over the same files, in one run.

Usage:
  python benchmarks/throughput.py pngs [--n 10000]       # 28x28 PNGs vs a decode-only loop
  python benchmarks/throughput.py photos [--n 20]        # 12 MP JPEGs vs full decoding
  python benchmarks/throughput.py memory [--n 10000]     # peak RSS of classify

Files are made here (synthetic digits) in a temporary folder. Each timing is the median of
--repeat runs; the decode loops run in one process on one core, classify as a user runs it
(`digitcli classify DIR -o FILE -q`, all cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import digitcli_exe, wall

from digitcli.synth import render_digit

DECODE_LOOP = """
import sys, os
from PIL import Image
folder = sys.argv[1]
for root, _, files in os.walk(folder):
    for name in files:
        with Image.open(os.path.join(root, name)) as im:
            im.load()
"""


def make_pngs(folder: Path, n: int) -> None:
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        render_digit(i % 10, seed=i, size=(28, 28)).convert("L").save(sub / f"{i:06d}.png")


def make_photos(folder: Path, n: int) -> None:
    for i in range(n):
        img = render_digit(
            i % 10,
            seed=i,
            size=(4000, 3000),
            digit_height=0.3,
            ink=(40, 40, 90),
            paper=(225, 215, 170),
        )
        img.save(folder / f"photo_{i:03d}.jpg", quality=90)


def compare(folder: Path, repeat: int) -> None:
    exe = digitcli_exe()
    out = folder.parent / "out.csv"
    classify = [exe, "classify", str(folder), "-o", str(out), "-q"]
    decode = [sys.executable, "-c", DECODE_LOOP, str(folder)]
    wall(decode, check=False)  # warm the file cache
    times: dict[str, list[float]] = {"classify": [], "decode": []}
    for _ in range(repeat):
        times["classify"].append(wall(classify, check=False))
        times["decode"].append(wall(decode, check=False))
    n = sum(len(files) for _, _, files in os.walk(folder))
    c, d = statistics.median(times["classify"]), statistics.median(times["decode"])
    print(f"files: {n}, runs: {repeat} each, alternating, median wall time")
    print(f"digitcli classify (all cores): {c:8.2f} s  {n / c:8.0f} files/s")
    print(f"Pillow decode loop (one core): {d:8.2f} s  {n / d:8.0f} files/s")
    print(f"ratio classify / decode: {c / d:.2f}")


def memory(folder: Path) -> None:
    exe = digitcli_exe()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=False, "
            "stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
            exe,
            "classify",
            str(folder),
            "-o",
            str(folder.parent / "out.csv"),
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    n = sum(len(files) for _, _, files in os.walk(folder))
    print(f"files: {n}, peak RSS of the largest process: {int(proc.stdout) / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["pngs", "photos", "memory"])
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        if args.what == "photos":
            make_photos(folder, args.n or 20)
            compare(folder, args.repeat)
        else:
            make_pngs(folder, args.n or 10000)
            compare(folder, args.repeat) if args.what == "pngs" else memory(folder)


if __name__ == "__main__":
    main()
