"""classify on a Dask cluster against a local run: the same bytes, and how long each takes.

Usage:
  python benchmarks/dask_identity.py [--n 10000] [--workers 2] [--repeat 3]

Makes --n 28x28 PNGs (synthetic digits, as benchmarks/throughput.py does) in a temporary
folder, starts a distributed.LocalCluster (worker processes, one thread each), and runs
`python -m digitcli classify DIR -o FILE -q` here (all cores, the forked pool) and with
`--scheduler ADDRESS`, alternately. Needs the extra digitcli[dask]. Exits 1 if the CSV
files differ.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import make_pngs


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pngs"
        folder.mkdir()
        started = time.perf_counter()
        make_pngs(folder, args.n)
        print(f"made {args.n} PNGs in {time.perf_counter() - started:.1f} s")
        local_csv, dask_csv = Path(tmp) / "local.csv", Path(tmp) / "dask.csv"
        base = [sys.executable, "-m", "digitcli", "classify", str(folder), "-q", "-o"]
        started = time.perf_counter()
        with LocalCluster(
            n_workers=args.workers, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster:
            print(
                f"LocalCluster of {args.workers} workers up in "
                f"{time.perf_counter() - started:.1f} s at {cluster.scheduler_address}"
            )
            local = [*base, str(local_csv)]
            remote = [*base, str(dask_csv), "--scheduler", cluster.scheduler_address]
            times: dict[str, list[float]] = {"local": [], "dask": []}
            for _ in range(args.repeat):
                times["local"].append(run(local))
                times["dask"].append(run(remote))
        same = local_csv.read_bytes() == dask_csv.read_bytes()
        rows = local_csv.read_bytes().count(b"\n") - 1
        print(
            f"rows: {rows}; CSV byte-identical: {same} ({local_csv.stat().st_size} bytes each)"
            if same
            else f"rows: {rows}; DIFFER"
        )
        for name, values in times.items():
            median = statistics.median(values)
            runs = ", ".join(f"{v:.2f}" for v in values)
            print(
                f"classify {name:5}: median {median:6.2f} s  {args.n / median:6.0f} files/s "
                f"(runs: {runs})"
            )
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
