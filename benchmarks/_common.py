"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path


def digitcli_exe() -> str:
    """The digitcli command installed next to this Python (else the one on PATH)."""
    exe = shutil.which("digitcli", path=str(Path(sys.executable).parent)) or shutil.which(
        "digitcli"
    )
    if not exe:
        sys.exit("digitcli is not installed next to this python")
    return exe


def wall(cmd: list[str], check: bool = True) -> float:
    """Wall time in seconds of running `cmd` with its output discarded."""
    start = time.perf_counter()
    subprocess.run(cmd, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start
