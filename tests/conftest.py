from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from digitcli import model as model_io
from digitcli.synth import render_digit

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def shipped_model() -> model_io.Model:
    return model_io.load(model_io.default_model_path())


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from digitcli.training import load_digits_data

    return load_digits_data()


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quickly trained model (not the shipped one), for tests that need any valid model."""
    from digitcli import training

    result = training.train(
        training.Recipe(hidden_layers=(32,), max_iter=40, augment=0), folds=2, n_jobs=1
    )
    return model_io.save(result.model, tmp_path_factory.mktemp("model") / "small.npz")


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


def save_image(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path
