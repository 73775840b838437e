"""--scheduler: the same rows and the same model on a Dask cluster as here.

Skipped when the extra digitcli[dask] (dask, distributed) is not installed. One
distributed.LocalCluster (2 worker processes, 1 thread each) serves the whole module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from digitcli import model as model_io  # noqa: E402
from digitcli import parallel  # noqa: E402
from digitcli.cli import cli  # noqa: E402
from digitcli.synth import render_digit  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    # Any free port for its HTTP server: a taken 8787 leaks a socket (a ResourceWarning).
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """300 digits in labelled folders (3 chunks of classify's 128), two of them broken."""
    root = tmp_path_factory.mktemp("images")
    for i in range(300):
        folder = root / str(i % 10)
        folder.mkdir(exist_ok=True)
        path = folder / f"{i:04d}.png"
        if i in (5, 200):
            path.write_bytes(b"not a png")
        else:
            render_digit(i % 10, seed=i, size=(28, 28)).save(path)
    return root


@pytest.mark.slow  # starts a local cluster: CI runs it
def test_classify_rows_are_byte_identical(cluster, images, runner, tmp_path):
    local, remote = tmp_path / "local.csv", tmp_path / "dask.csv"
    args = ["classify", str(images), "--probabilities", "-q"]
    first = runner.invoke(cli, [*args, "-o", str(local)])
    assert first.exit_code == 1, first.output  # the two broken files
    result = runner.invoke(cli, [*args, "-o", str(remote), "--scheduler", cluster])
    assert result.exit_code == 1, result.output
    assert remote.read_bytes() == local.read_bytes()
    assert local.read_text().count("\n") == 301


@pytest.mark.slow  # starts a local cluster: CI runs it
def test_read_rows_are_byte_identical(cluster, tmp_path, runner):
    """read's layouts are made on the workers; the numbers are read the same."""
    from digitcli.synth import number_image

    folder = tmp_path / "numbers"
    folder.mkdir()
    for i in range(150):  # two chunks of 128
        number_image(str(1000 + 37 * i), seed=i, texture=i % 2 == 0).save(folder / f"{i:03d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    local, remote = tmp_path / "local.csv", tmp_path / "dask.csv"
    args = ["read", str(folder), "--details", "-q"]
    assert runner.invoke(cli, [*args, "-o", str(local)]).exit_code == 1
    result = runner.invoke(cli, [*args, "-o", str(remote), "--scheduler", cluster])
    assert result.exit_code == 1, result.output
    assert remote.read_bytes() == local.read_bytes()
    assert local.read_text().count("\n") == 152


@pytest.mark.slow  # starts a local cluster: CI runs it
def test_relative_paths_are_read_by_workers_in_other_folders(cluster, images, runner, monkeypatch):
    """The workers started in another folder: they get absolute paths, rows keep the given."""
    monkeypatch.chdir(images.parent)
    args = ["classify", images.name, "-q"]
    local = runner.invoke(cli, args)
    remote = runner.invoke(cli, [*args, "--scheduler", cluster])
    assert remote.exit_code == local.exit_code == 1  # the two broken files only
    assert remote.stdout == local.stdout
    assert f"\n{images.name}/" in remote.stdout


@pytest.mark.slow  # starts a local cluster: CI runs it
def test_dask_setting_is_the_default(cluster, images, runner, tmp_path, monkeypatch):
    used = []
    check = parallel._check_workers
    monkeypatch.setattr(parallel, "_check_workers", lambda c, a: used.append(a) or check(c, a))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster)
    result = runner.invoke(cli, ["classify", str(images / "3"), "-q"])
    assert result.exit_code == 0, result.output
    assert used == [cluster]
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert runner.invoke(cli, ["classify", str(images / "3"), "-q"]).stdout == result.stdout
    assert used == [cluster]


@pytest.mark.slow  # starts a local cluster: CI runs it
def test_eval_images_is_identical(cluster, images, runner):
    args = ["eval", "--images", str(images), "--json"]
    local = runner.invoke(cli, args)
    remote = runner.invoke(cli, [*args, "--scheduler", cluster])
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)


def _same_model(a: Path, b: Path) -> None:
    """Every array and every recorded figure equal; only the creation time may differ."""
    x, y = model_io.load(a), model_io.load(b)
    assert len(x.members) == len(y.members)
    for net, other in zip(x.members, y.members, strict=True):
        for (W, c), (W2, c2) in zip(net, other, strict=True):
            np.testing.assert_array_equal(W, W2)
            np.testing.assert_array_equal(c, c2)
    np.testing.assert_array_equal(x.test_index, y.test_index)
    assert (x.kernel is None) == (y.kernel is None)
    if x.kernel is not None:
        np.testing.assert_array_equal(x.kernel.W, y.kernel.W)
        np.testing.assert_array_equal(x.kernel.b, y.kernel.b)
    assert {**x.metadata, "created": ""} == {**y.metadata, "created": ""}


def _train_twice(runner, cluster, tmp_path, args) -> None:
    local, remote = tmp_path / "local.npz", tmp_path / "dask.npz"
    result = runner.invoke(cli, ["train", *args, "-q", "--out", str(local)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli, ["train", *args, "-q", "--out", str(remote), "--scheduler", cluster]
    )
    assert result.exit_code == 0, result.output
    _same_model(local, remote)


@pytest.mark.slow  # starts a local cluster: CI runs it
def test_train_tiny_gives_the_same_model(cluster, runner, tmp_path):
    # Here in this process (-j 1) against the cluster: -j is the cluster's with --scheduler.
    tiny = "--hidden-layers 8 --max-iter 3 --augment 0 --ensemble 2 --synthetic 2 --folds 2 -j 1"
    _train_twice(runner, cluster, tmp_path, [*tiny.split(), "--kernel-weight", "0"])


@pytest.mark.slow
def test_train_fast_gives_the_same_model(cluster, runner, tmp_path):
    _train_twice(runner, cluster, tmp_path, ["--fast"])


def test_an_unreachable_scheduler_is_a_one_line_error(runner, make_digit):
    import dask.config

    image = str(make_digit(3))
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        result = runner.invoke(cli, ["classify", image, "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot use the Dask scheduler tcp://127.0.0.1:1: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow  # starts a local cluster: CI runs it
@pytest.mark.parametrize("fake", ["other version", "no digitcli"])
def test_workers_must_run_this_digitcli(fake, runner, tmp_path, make_digit):
    """A worker with another digitcli, or none it can import: a one-line error, no work."""
    package = tmp_path / "fake" / "digitcli"
    package.mkdir(parents=True)
    if fake == "other version":
        (package / "__init__.py").write_text("__version__ = '0.0.1'\n")
        (package / "parallel.py").write_text(
            "def _version():\n    from digitcli import __version__\n    return __version__\n"
        )
    else:
        (package / "__init__.py").write_text("raise ImportError('no digitcli here')\n")
    # Workers get their parent's sys.path: a preload script puts the fake first.
    preload = tmp_path / "preload.py"
    preload.write_text(f"import sys\nsys.path.insert(0, {str(package.parent)!r})\n")
    image = str(make_digit(3))
    with distributed.LocalCluster(
        n_workers=1,
        processes=True,
        threads_per_worker=1,
        dashboard_address=":0",
        preload=[str(preload)],
    ) as other:
        result = runner.invoke(cli, ["classify", image, "--scheduler", other.scheduler_address])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    expected = (
        "run digitcli 0.0.1, this is"
        if fake == "other version"
        else "cannot run digitcli (ImportError"
    )
    assert expected in result.stderr, result.stderr


def test_dask_is_imported_only_where_it_has_a_setting(make_digit, tmp_path):
    """Dask's configuration folders are looked at first: a plain classify never imports Dask."""
    import os
    import subprocess
    import sys

    import dask.config

    assert parallel._dask_config_folders() == dask.config.paths
    image = make_digit(4, "four.png")
    code = (
        "import sys\n"
        "from digitcli.cli import cli\n"
        "try:\n"
        f"    cli.main(args=['classify', {str(image)!r}, '-q'], prog_name='digitcli')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('dask loaded:', 'dask' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_ROOT_CONFIG"] = env["DASK_CONFIG"] = str(tmp_path / "no-config")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.splitlines()[-1] == "dask loaded: False", done.stdout + done.stderr
