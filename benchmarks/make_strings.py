"""Write a labelled set of synthetic handwritten numbers (cheque amounts) for ``digitcli read``.

Usage: python benchmarks/make_strings.py OUTDIR [--n 500] [--seed 0]

Each image is :func:`digitcli.synth.number_image` of 3-7 digits in one hand, 30-50 pixels
high, under mixed conditions: the spacing of the digits across -15%..+40% of a digit's
width, touching pairs, separators (``25.441``, ``1'222``, ``48,50``), a trailing ``-``,
``=`` or long dash, a printed guide line, a textured security ground, blur/noise/JPEG.

It writes OUTDIR/00000.png ..., OUTDIR/labels.csv (``file,number``: the file relative to
the CSV and the digits alone, leading zeros kept: read it as text) and OUTDIR/conditions.csv
(one row per image: what was written and how, for the breakdown in ``strings.py``).
The same ``--n`` and ``--seed`` give the same files.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from digitcli.synth import END_MARKS, number_image

#: Shares of the images with each condition.
SHARES = {
    "separators": 0.35,
    "end_mark": 0.2,
    "touching": 0.25,
    "guide_line": 0.35,
    "texture": 0.4,
    "degrade": 0.25,
}
GAP = (-0.15, 0.40)
#: Columns of conditions.csv.
CONDITIONS = (
    "file",
    "number",
    "text",
    "length",
    "height",
    "gap",
    "touching",
    "separators",
    "end_mark",
    "guide_line",
    "texture",
    "degrade",
    "seed",
)


def _digits(rng: np.random.Generator, length: int) -> str:
    digits = rng.integers(0, 10, size=length)
    if rng.random() > 0.08:  # most amounts do not start with 0
        digits[0] = rng.integers(1, 10)
    if length >= 4 and rng.random() < 0.2:  # round amounts: 280000, 2500
        zeros = int(rng.integers(2, min(3, length - 1) + 1))
        digits[length - zeros :] = 0
    return "".join(str(d) for d in digits)


def _with_separators(rng: np.random.Generator, number: str) -> str:
    """`number` written with thousands separators or a decimal separator."""
    if len(number) >= 4 and rng.random() < 0.6:
        sep = str(rng.choice([".", ",", "'"], p=[0.5, 0.2, 0.3]))
        groups = []
        rest = number
        while len(rest) > 3:
            groups.insert(0, rest[-3:])
            rest = rest[:-3]
        return sep.join([rest, *groups])
    sep = str(rng.choice([",", "."]))
    return number[:-2] + sep + number[-2:]


def sample(rng: np.random.Generator, index: int) -> dict:
    """One image's conditions (see CONDITIONS), drawn from `rng`."""
    length = int(rng.integers(3, 8))
    number = _digits(rng, length)
    text = _with_separators(rng, number) if rng.random() < SHARES["separators"] else number
    end = str(rng.choice(END_MARKS)) if rng.random() < SHARES["end_mark"] else ""
    # Digit pairs with nothing written between them can touch.
    digit_pos = [i for i, c in enumerate(text) if c.isdigit()]
    pairs = [k for k in range(length - 1) if digit_pos[k + 1] == digit_pos[k] + 1]
    touching: list[int] = []
    if pairs and rng.random() < SHARES["touching"]:
        count = 2 if len(pairs) > 2 and rng.random() < 0.2 else 1
        touching = sorted(int(k) for k in rng.choice(pairs, size=count, replace=False))
    gap = float(rng.uniform(*GAP))
    return {
        "file": f"{index:05d}.png",
        "number": number,
        "text": text + end,
        "length": length,
        "height": int(rng.integers(30, 51)),
        "gap": round(gap, 3),
        "touching": " ".join(str(k) for k in touching),
        "separators": sum(c in ".,'" for c in text),
        "end_mark": end,
        "guide_line": int(rng.random() < SHARES["guide_line"]),
        "texture": int(rng.random() < SHARES["texture"]),
        "degrade": int(rng.random() < SHARES["degrade"]),
        "seed": int(rng.integers(2**31)),
    }


def draw(row: dict):
    """The image of one row of conditions.csv (values as :func:`sample` gives them)."""
    gap = float(row["gap"])
    return number_image(
        row["text"],
        seed=int(row["seed"]),
        height=int(row["height"]),
        # The hand's spacing, each pair varying a little round it.
        gap=(max(GAP[0], gap - 0.05), min(GAP[1], gap + 0.05)),
        touching=tuple(int(k) for k in str(row["touching"]).split()),
        guide_line=bool(int(row["guide_line"])),
        texture=bool(int(row["texture"])),
        degrade=bool(int(row["degrade"])),
    )


def write_set(outdir: Path, n: int = 500, seed: int = 0) -> list[dict]:
    """Write `n` images, labels.csv and conditions.csv in `outdir`; return the rows."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [sample(rng, i) for i in range(n)]
    for row in rows:
        draw(row).save(outdir / row["file"])
    with open(outdir / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "number"])
        writer.writerows([row["file"], row["number"]] for row in rows)
    with open(outdir / "conditions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CONDITIONS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--n", type=int, default=500, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    write_set(args.outdir, args.n, args.seed)
    print(f"wrote {args.n} images, labels.csv and conditions.csv in {args.outdir}")


if __name__ == "__main__":
    main()
