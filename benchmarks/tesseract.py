"""Tesseract OCR on the data digitcli is measured on, so the figures can be put side by side.

Usage: python benchmarks/tesseract.py numbers LABELS.csv [--psm 7] [--workers N] [--json]
       python benchmarks/tesseract.py digits FOLDER... [--psm 10] [--limit N] [--workers N] [--json]

Tesseract is not a dependency of digitcli: the ``tesseract`` binary (5.x) must be on PATH,
else this says so and exits 2. Each image is read by its own process,
``tesseract IMG stdout --psm N -c tessedit_char_whitelist=0123456789`` with
``OMP_THREAD_LIMIT=1``, --workers of them at a time (default: ``os.cpu_count()``). Only the
digits 0-9 of what it prints are kept. A file Tesseract fails on reads as "" (counted as
``errors``).

An image is handed over as it is, unless Tesseract would not see it as digitcli does: one
with an EXIF rotation or mirroring, or with transparency, is first written as a grey PNG
(rotated, transparency flattened onto white, or onto black when the strokes are light, as
digitcli's decoder does) in a temporary folder (counted as ``prepared``; --raw turns it off).

numbers
    LABELS.csv has the columns ``file,number`` (files relative to the CSV's folder), as
    ``make_strings.py`` writes it; it is read, and the figures are scored, as
    ``digitcli eval --numbers`` does (``digitcli.number_eval``). It prints the images, the
    exact-number accuracy, the character error rate (edit distance summed over the images,
    over the summed length of the true numbers), the share read with the right number of
    digits, the share with no digit at all, and the images per second.
digits
    Each FOLDER holds sub-folders ``0`` .. ``9`` of images of that digit. Per folder it
    prints the images, the accuracy (the first digit Tesseract prints is the label; no
    output is wrong), the share with no output and the images per second. --limit N takes
    only the first N files of each digit, sorted by name.

Images per second is wall time over the whole run, with --workers processes, the
preparation above and process start-up included (Tesseract has no batch mode here).
--json prints one JSON object instead of the text.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitcli.errors import DataError
from digitcli.number_eval import number_metrics, read_labels

#: The binary; it is looked up on PATH.
TESSERACT = "tesseract"
#: Exit status when the binary is missing.
EXIT_NO_TESSERACT = 2
#: Characters Tesseract may output.
DIGITS = "0123456789"
#: Page segmentation modes used by default: 7 = one text line, 10 = one character.
DEFAULT_PSM = {"numbers": 7, "digits": 10}
#: Seconds after which one Tesseract run is given up (and counted as an error).
TIMEOUT_S = 60.0
#: Tesseract is single-image here: keep its OpenMP to one thread per process.
TESSERACT_ENV = {**os.environ, "OMP_THREAD_LIMIT": "1"}
#: File endings taken from a digit folder (the ones digitcli's classify picks up, mostly).
IMAGE_SUFFIXES = frozenset(
    [".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp"]
    + [".pbm", ".pgm", ".ppm", ".pnm"]
)
#: EXIF tag of the orientation (1 = as stored).
EXIF_ORIENTATION = 0x0112
#: Mean grey level (0..1) above which strokes on a transparent ground count as light.
LIGHT_STROKES = 0.5


@dataclass(frozen=True)
class Reading:
    """What Tesseract read in one image.

    Attributes
    ----------
    digits : str
        The digits 0-9 of its output, in order ("" on failure).
    error : str
        Why it failed ("" if it did not).
    prepared : bool
        Whether the image was rewritten before (see :func:`prepare`).
    """

    digits: str
    error: str = ""
    prepared: bool = False


def tesseract_version() -> str:
    """The first line of ``tesseract --version``; exit 2 if the binary is missing."""
    if shutil.which(TESSERACT) is None:
        print(
            f"`{TESSERACT}` was not found on PATH. Tesseract is not a dependency of digitcli: "
            "install it (e.g. `apt-get install tesseract-ocr`) to run this benchmark.",
            file=sys.stderr,
        )
        sys.exit(EXIT_NO_TESSERACT)
    proc = subprocess.run(
        [TESSERACT, "--version"], capture_output=True, text=True, env=TESSERACT_ENV
    )
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else "tesseract (unknown version)"


def only_digits(text: str) -> str:
    """The characters 0-9 of `text` (not other Unicode digits), in order."""
    return "".join(c for c in text if c in DIGITS)


def flattened(img: Image.Image) -> Image.Image:
    """Grey levels of an image with transparency, flattened as digitcli's decoder does."""
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    lum = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
    weight = float(alpha.sum())
    stroke_lum = float((lum * alpha).sum() / weight) if weight else 1.0
    ground = 0.0 if stroke_lum > LIGHT_STROKES else 1.0
    gray = lum * alpha + ground * (1.0 - alpha)
    return Image.fromarray(np.round(gray * 255.0).astype(np.uint8), mode="L")


def prepare(path: Path, tmp: Path, index: int) -> tuple[Path, bool]:
    """The file to give Tesseract for `path`, and whether it had to be rewritten.

    Only an image with an EXIF rotation or mirroring, or with transparency, is rewritten (a
    grey PNG in `tmp`); any other file, or one Pillow cannot open, is passed as it is.
    """
    try:
        with Image.open(path) as src:
            orientation = src.getexif().get(EXIF_ORIENTATION, 1)
            transparent = src.mode in ("RGBA", "LA", "PA") or "transparency" in src.info
            if transparent:
                src.load()
                alpha = src.convert("RGBA").getchannel("A")
                transparent = alpha.getextrema()[0] < 255
            if orientation == 1 and not transparent:
                return path, False
            img = ImageOps.exif_transpose(src)
            img = flattened(img) if transparent else img.convert("L")
        out = tmp / f"{index:06d}.png"
        img.save(out)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return path, False  # Tesseract is given the file as it is (and reports its error)
    return out, True


def read_image(path: Path, psm: int, tmp: Path | None, index: int) -> Reading:
    """Run Tesseract on one image (prepared first unless `tmp` is None)."""
    src, prepared = prepare(path, tmp, index) if tmp is not None else (path, False)
    cmd = [TESSERACT, str(src), "stdout", "--psm", str(psm)]
    cmd += ["-c", f"tessedit_char_whitelist={DIGITS}"]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=TESSERACT_ENV, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return Reading("", f"{path}: no answer in {TIMEOUT_S:g} s", prepared)
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return Reading("", f"{path}: {why[0]}", prepared)
    return Reading(only_digits(proc.stdout), "", prepared)


def read_all(
    paths: Sequence[Path], psm: int, workers: int, raw: bool
) -> tuple[list[Reading], float]:
    """Readings of `paths` (in order) and the wall time in seconds, `workers` at a time."""
    with tempfile.TemporaryDirectory(prefix="tess_bench_") as tmp_dir:
        tmp = None if raw else Path(tmp_dir)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            readings = list(
                pool.map(
                    read_image, paths, [psm] * len(paths), [tmp] * len(paths), range(len(paths))
                )
            )
        seconds = time.perf_counter() - start
    errors = [r.error for r in readings if r.error]
    if errors:
        print(
            f"warning: Tesseract failed on {len(errors)} file(s), e.g. {errors[0]}", file=sys.stderr
        )
    return readings, seconds


def digit_files(folder: Path, limit: int | None) -> tuple[list[Path], list[int]]:
    """Image files of a ``folder/<digit>/`` set, sorted by name, at most `limit` a digit."""
    paths: list[Path] = []
    labels: list[int] = []
    for digit in range(10):
        sub = folder / str(digit)
        if not sub.is_dir():
            continue
        files = sorted(
            p
            for p in sub.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        files = files[:limit] if limit is not None else files
        paths += files
        labels += [digit] * len(files)
    if not paths:
        sys.exit(f"{folder}: no images in digit folders (expected {folder}/0 .. {folder}/9)")
    return paths, labels


def numbers_result(labels_csv: Path, psm: int, workers: int, raw: bool) -> dict:
    """The figures of numbers mode on one labels CSV."""
    try:  # read as `digitcli eval --numbers` reads it
        labelled = read_labels(labels_csv)
    except DataError as exc:
        sys.exit(str(exc))
    truth = [item.number for item in labelled]
    readings, seconds = read_all([Path(item.path) for item in labelled], psm, workers, raw)
    got = [r.digits for r in readings]
    n = len(truth)
    scores = number_metrics(truth, got)  # the figures of `digitcli eval --numbers`
    return {
        "labels": str(labels_csv),
        "images": n,
        "exact": scores["exact"],
        "cer": scores["cer"],
        "right_length": scores["length_accuracy"],
        "no_output": sum(not g for g in got) / n,
        "errors": sum(bool(r.error) for r in readings),
        "prepared": sum(r.prepared for r in readings),
        "seconds": seconds,
        "images_per_s": n / seconds,
    }


def digits_result(folder: Path, psm: int, workers: int, raw: bool, limit: int | None) -> dict:
    """The figures of digits mode on one ``folder/<digit>/`` set."""
    paths, truth = digit_files(folder, limit)
    readings, seconds = read_all(paths, psm, workers, raw)
    first = [r.digits[:1] for r in readings]
    n = len(truth)
    return {
        "folder": str(folder),
        "images": n,
        "accuracy": sum(f == str(t) for f, t in zip(first, truth, strict=True)) / n,
        "no_output": sum(not f for f in first) / n,
        "errors": sum(bool(r.error) for r in readings),
        "prepared": sum(r.prepared for r in readings),
        "seconds": seconds,
        "images_per_s": n / seconds,
    }


def print_numbers(report: dict) -> None:
    for res in report["results"]:
        print(f"{report['version']}, psm {report['psm']}, {report['workers']} worker(s)")
        print(f"labels         {res['labels']}")
        extra = f"errors: {res['errors']}, prepared: {res['prepared']}"
        print(f"images         {res['images']}  ({extra})")
        print(f"exact          {res['exact']:.3f}")
        print(f"CER            {res['cer']:.3f}")
        print(f"right length   {res['right_length']:.3f}")
        print(f"no output      {res['no_output']:.3f}")
        print(f"images/s       {res['images_per_s']:.1f}  (wall, {res['seconds']:.1f} s)")
        print(f"psm            {report['psm']}")


def print_digits(report: dict) -> None:
    limit = "" if report["limit"] is None else f", first {report['limit']} per digit"
    print(f"{report['version']}, psm {report['psm']}, {report['workers']} worker(s){limit}")
    print(
        f"{'folder':<16} {'images':>6} {'accuracy':>9} {'no output':>10} {'images/s':>9} "
        f"{'errors':>7} {'prepared':>9}"
    )
    for res in report["results"]:
        print(
            f"{Path(res['folder']).name:<16} {res['images']:>6} {res['accuracy']:>9.3f} "
            f"{res['no_output']:>10.3f} {res['images_per_s']:>9.1f} {res['errors']:>7} "
            f"{res['prepared']:>9}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--psm", type=int, help="page segmentation mode (numbers 7, digits 10)")
    common.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="Tesseract processes at once"
    )
    common.add_argument("--json", action="store_true", help="print one JSON object")
    common.add_argument(
        "--raw", action="store_true", help="hand every file over as it is (no EXIF/alpha fix)"
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    numbers = modes.add_parser("numbers", parents=[common], help="numbers of a labels CSV")
    numbers.add_argument("labels", type=Path, help="CSV with the columns file,number")
    digits = modes.add_parser("digits", parents=[common], help="folders of single digits")
    digits.add_argument("folders", type=Path, nargs="+", help="folders with 0 .. 9 inside")
    digits.add_argument("--limit", type=int, help="only the first N files of each digit")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if getattr(args, "limit", None) is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    psm = DEFAULT_PSM[args.mode] if args.psm is None else args.psm

    version = tesseract_version()
    report: dict = {"tool": TESSERACT, "version": version, "mode": args.mode, "psm": psm}
    report["workers"] = args.workers
    show: Callable[[dict], None]
    if args.mode == "numbers":
        if not args.labels.is_file():
            sys.exit(f"{args.labels}: no such file")
        report["results"] = [numbers_result(args.labels, psm, args.workers, args.raw)]
        show = print_numbers
    else:
        for folder in args.folders:
            if not folder.is_dir():
                sys.exit(f"{folder}: no such folder")
        report["limit"] = args.limit
        report["results"] = [
            digits_result(folder, psm, args.workers, args.raw, args.limit)
            for folder in args.folders
        ]
        show = print_digits
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)


if __name__ == "__main__":
    main()
