"""The package installs (not only editable) with its default model inside."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_the_model_and_runs_from_another_folder(tmp_path, make_digit):
    # Build from a copy, so that the build leaves nothing in the working tree.
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("digitcli-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "digitcli/models/default.npz" in names
    assert "digitcli/cli.py" in names

    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    image = make_digit(2)
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(target)!r}); "
            "from digitcli.cli import main; import digitcli.model as m; "
            "print('MODEL', m.default_model_path()); sys.argv[1:] = ['classify', "
            f"{str(image)!r}]; main()",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"MODEL {target}" in proc.stdout
    assert "path,digit,confidence,error" in proc.stdout
