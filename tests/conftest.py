from __future__ import annotations

import csv
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from digitcli import model as model_io
from digitcli.synth import render_digit


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def shipped_model() -> model_io.Model:
    return model_io.load(model_io.default_model_path())


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from digitcli.datasets import digits

    X, y, _ = digits()
    return X, y


@pytest.fixture
def unprivileged():
    """Prefix a command so that mode 000 stops it even as root (no DAC-override capabilities).

    As root the command keeps its uid (it still owns the test's files) but runs under
    ``setpriv`` without the capabilities that let root read and search anything.
    """

    def wrap(args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args
        drop = ["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
        return ["setpriv", *drop, *args]

    return wrap


@pytest.fixture
def make_digit(tmp_path: Path):
    """Write a synthetic handwritten digit image and return its path."""

    def make(digit: int = 3, name: str | None = None, seed: int = 0, **kw) -> Path:
        path = tmp_path / (name or f"digit_{digit}_{seed}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        img = render_digit(digit, seed=seed, size=kw.pop("size", (64, 64)), **kw)
        img.save(path)
        return path

    return make


@pytest.fixture
def csv_rows():
    """Parse CSV text (as written by classify) into dicts."""

    def parse(text: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(text, newline="")))

    return parse


@pytest.fixture
def png_header():
    """Bytes of a PNG that declares `width` x `height` pixels and holds none (a bomb)."""

    def make(width: int, height: int) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")

    return make
