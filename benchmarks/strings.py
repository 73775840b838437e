"""How well ``digitcli read`` reads handwritten numbers: a synthetic set of cheque amounts.

Usage: python benchmarks/strings.py [--n 500] [--seed 0] [--keep DIR]

It writes the set of ``make_strings.py`` (in a temporary folder, or DIR), runs
``python -m digitcli read DIR -o out.csv`` on it and prints:

- exact: the share of images whose number (the digits, separators dropped) is read exactly;
- CER: character error rate, the Levenshtein distance between the number read and the label
  summed over the images, over the summed length of the labels;
- length: the share of images read with the right number of digits;
- exact accuracy by condition: touching pairs, separators, end mark, guide line, texture,
  degradation, spacing and length.

An image missing from the output, or read with an error, counts as read as "". Exits 1 if
the command fails (saying so clearly if ``read`` does not exist yet).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from make_strings import write_set

from digitcli.number_eval import number_metrics


def run_read(folder: Path, out: Path, kept: bool) -> None:
    """Run ``digitcli read`` on `folder`; exit 1 with the reason if it fails."""
    cmd = [sys.executable, "-m", "digitcli", "read", str(folder), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0 and out.is_file():
        return
    err = proc.stderr.strip()
    where = f"The set is in {folder}." if kept else "Use --keep DIR to keep the set."
    if "No such command" in err and "read" in err:
        sys.exit(
            "digitcli has no `read` command yet (`python -m digitcli read` says: No such "
            f"command 'read'); nothing to benchmark. {where}"
        )
    sys.exit(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{err}\n{where}")


def read_output(out: Path, folder: Path) -> dict[str, str]:
    """The number read for each image, keyed by file name; "" where the row has an error."""
    got = {}
    with open(out, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = Path(row["path"])
            if not path.is_absolute() and not path.exists():
                path = folder / path
            number = "" if (row.get("error") or "").strip() else (row.get("number") or "")
            got[path.name] = "".join(c for c in number if c.isdigit())
    return got


def gap_bin(gap: float) -> str:
    if gap < 0:
        return "overlap (<0)"
    return "normal (0-0.2)" if gap < 0.2 else "wide (>=0.2)"


def report(rows: list[dict], got: dict[str, str]) -> None:
    n = len(rows)
    exact = [got.get(r["file"], "") == r["number"] for r in rows]
    # The figures of `digitcli eval --numbers`.
    scores = number_metrics([r["number"] for r in rows], [got.get(r["file"], "") for r in rows])
    missing = sum(r["file"] not in got for r in rows)
    print(f"images       {n}  (missing from the output: {missing})")
    print(f"exact        {scores['exact']:.3f}")
    print(f"CER          {scores['cer']:.3f}")
    print(f"length       {scores['length_accuracy']:.3f}")
    groups = {
        "touching": lambda r: "yes" if r["touching"] else "no",
        "separators": lambda r: "yes" if int(r["separators"]) else "no",
        "end mark": lambda r: r["end_mark"] or "none",
        "guide line": lambda r: "yes" if int(r["guide_line"]) else "no",
        "texture": lambda r: "yes" if int(r["texture"]) else "no",
        "degrade": lambda r: "yes" if int(r["degrade"]) else "no",
        "spacing": lambda r: gap_bin(float(r["gap"])),
        "length": lambda r: str(r["length"]),
    }
    print("\nexact accuracy by condition")
    for name, key in groups.items():
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r, ok in zip(rows, exact, strict=True):
            tally[key(r)][0] += ok
            tally[key(r)][1] += 1
        cells = "  ".join(f"{k}: {a / b:.3f} ({b})" for k, (a, b) in sorted(tally.items()))
        print(f"  {name:<11} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the set here (else a temp dir)")
    args = parser.parse_args()
    if args.n < 1:
        parser.error("--n must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp) / "strings").resolve()
        rows = write_set(folder, args.n, args.seed)
        out = Path(tmp) / "out.csv"
        if args.keep:
            out = folder.parent / f"{folder.name}-read.csv"
        run_read(folder, out, kept=args.keep is not None)
        report(rows, read_output(out, folder))


if __name__ == "__main__":
    main()
