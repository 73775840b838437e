"""CPU time and memory of `digitcli read` per image, on one core.

Usage:
  python benchmarks/read_speed.py [FOLDER] [--n 1000] [--repeat 5]
  python benchmarks/read_speed.py memory [FOLDER] [--n 100000] [--jobs 2]

FOLDER holds number images (for example ../shared/data/dev/numbers-cheques); its images
are linked into a temporary folder until there are --n of them. Without FOLDER, --n
synthetic numbers (synth.number_image, 3-7 digits, cheque-sized: about 50 px high) are
made here. The speed mode runs `digitcli read DIR -j 1` --repeat times and prints the
median CPU (user + system of the process) per image, with the cost of starting: a
process that only imports what read needs. The memory mode runs `read -j JOBS` once and
samples the resident memory of the main process and of its workers every second.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def fill(folder: Path, source: str | None, n: int) -> None:
    """Put `n` images in `folder`: links to `source`'s images in turn, or synthetic ones."""
    if source:
        files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for i in range(n):
            sub = folder / f"{i // 1000:03d}"
            sub.mkdir(exist_ok=True)
            os.symlink(
                files[i % len(files)].resolve(), sub / f"{i:06d}{files[i % len(files)].suffix}"
            )
        return
    import numpy as np

    from digitcli.synth import number_image

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        digits = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(3, 8))))
        number_image(digits, seed=i, height=36, texture=bool(i % 2)).save(sub / f"{i:06d}.png")


def cpu_seconds(args: list[str]) -> float:
    """User + system seconds of a child process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def speed(folder: Path, n: int, repeat: int) -> None:
    read = [
        sys.executable,
        "-m",
        "digitcli",
        "read",
        str(folder),
        "-j",
        "1",
        "-q",
        "-o",
        os.devnull,
    ]
    start = [sys.executable, "-c", "import digitcli.cli, digitcli.reading, digitcli.model"]
    runs = [cpu_seconds(read) for _ in range(repeat)]
    floor = statistics.median(cpu_seconds(start) for _ in range(repeat))
    total = statistics.median(runs)
    print(f"read {n} images on one core: CPU {total:.2f} s (runs {min(runs):.2f}-{max(runs):.2f})")
    print(f"starting (imports): {floor:.2f} s")
    each, with_start = 1000 * (total - floor) / n, 1000 * total / n
    print(f"per image: {each:.2f} ms CPU ({with_start:.2f} with the start)")


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def memory(folder: Path, n: int, jobs: int) -> None:
    out = Path(tempfile.mkdtemp()) / "rows.csv"
    args = [sys.executable, "-m", "digitcli", "read", str(folder), "-j", str(jobs), "-q"]
    proc = subprocess.Popen([*args, "-o", str(out)])
    samples = []
    while proc.poll() is None:
        time.sleep(1)
        rows = 0
        if out.exists():
            with open(out, "rb") as f:
                rows = sum(1 for _ in f) - 1
        samples.append((rows, rss_kb(proc.pid), sum(rss_kb(c) for c in children(proc.pid))))
    print(f"read {n} images with {jobs} workers: exit {proc.returncode}")
    print("rows written   main MB   workers MB")
    step = max(1, len(samples) // 10)
    for rows, main, workers in [s for s in samples[::step] if s[1]]:
        print(f"{rows:>12}   {main / 1024:7.1f}   {workers / 1024:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode_or_folder", nargs="?", default=None)
    parser.add_argument("folder", nargs="?", default=None)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    mode = "memory" if args.mode_or_folder == "memory" else "speed"
    source = args.folder if mode == "memory" else args.mode_or_folder
    n = args.n or (100_000 if mode == "memory" else 1000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fill(folder, source, n)
        if mode == "memory":
            memory(folder, n, args.jobs)
        else:
            speed(folder, n, args.repeat)


if __name__ == "__main__":
    main()
