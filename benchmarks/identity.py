"""Do two code trees give byte-identical classify output on the same folders?

A restructuring must not change a single prediction. This runs ``python -m digitcli
classify --probabilities`` on each folder with each tree first on ``PYTHONPATH``, and
compares the CSVs byte for byte.

    git worktree add /tmp/before <commit>
    python benchmarks/identity.py /tmp/before . sample_images ../shared/data/dev/*/
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def classify(tree: Path, folder: str, out: Path) -> bytes:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    cmd = [sys.executable, "-m", "digitcli", "classify", folder, "--probabilities", "-q"]
    cmd += ["-o", str(out)]
    # Run from an empty folder, so that the tree on PYTHONPATH is the one imported.
    with tempfile.TemporaryDirectory() as empty:
        subprocess.run(cmd, env=env, cwd=empty, check=False)
    return out.read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the code tree before")
    parser.add_argument("after", type=Path, help="the code tree after")
    parser.add_argument("folders", nargs="+", help="image folders")
    args = parser.parse_args()
    differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        for folder in args.folders:
            folder = os.path.abspath(folder)
            old = classify(args.before, folder, Path(tmp, "before.csv"))
            new = classify(args.after, folder, Path(tmp, "after.csv"))
            rows = old.count(b"\n") - 1
            same = old == new
            differ += not same
            changed = sum(a != b for a, b in zip(old.splitlines(), new.splitlines(), strict=False))
            verdict = "identical" if same else f"{changed} rows differ"
            print(f"{folder}: {rows} rows, {verdict}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
