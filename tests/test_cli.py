from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from digitcli import datasets
from digitcli import model as model_io
from digitcli.cli import cli

COMMANDS = [[], ["classify"], ["show"], ["eval"], ["train"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] if c else "group")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_everywhere(runner, command, flag):
    result = runner.invoke(cli, [*command, flag])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout and "Examples:" in result.stdout


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    from digitcli import __version__

    assert __version__ in result.stdout


def test_classify_folder_to_stdout(runner, tmp_path, make_digit, csv_rows):
    for d in range(10):
        make_digit(d, f"in/{d}.png", seed=d)
    result = runner.invoke(cli, ["classify", str(tmp_path / "in")])
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.stdout)
    assert list(rows[0]) == ["path", "digit", "confidence", "error", "flag"]
    assert [r["path"] for r in rows] == [str(tmp_path / "in" / f"{d}.png") for d in range(10)]
    assert all(r["digit"] in "0123456789" and r["digit"] and not r["error"] for r in rows)
    assert "10 classified, 0 failed" in result.stderr


def test_classify_to_file_with_probabilities(runner, tmp_path, make_digit, csv_rows):
    image = make_digit(8)
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, ["classify", str(image), "-o", str(out), "--probabilities"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    [row] = csv_rows(out.read_text(encoding="utf-8"))
    probs = [float(row[f"p{d}"]) for d in range(10)]
    assert sum(probs) == pytest.approx(1, abs=1e-3)
    assert float(row["confidence"]) == max(probs)
    assert int(row["digit"]) == int(np.argmax(probs))


def test_classify_bad_files_are_rows_and_exit_1(runner, tmp_path, make_digit, csv_rows):
    good = make_digit(4, "a_good.png")
    bad = tmp_path / "b_bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    blank = tmp_path / "c_blank.png"
    from PIL import Image

    Image.new("L", (30, 30), 255).save(blank)
    result = runner.invoke(
        cli, ["classify", str(good), str(bad), str(blank), str(tmp_path / "d_missing.png")]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = csv_rows(result.stdout)
    assert rows[0]["digit"] and not rows[0]["error"]
    assert rows[1]["digit"] == "" and rows[1]["error"]
    assert rows[2]["error"] == "no digit found"
    assert rows[3]["error"] == "file not found"
    assert "1 classified, 3 failed" in result.stderr


@pytest.mark.parametrize("content", [b"", b"junk", b"PK\x03\x04junk"])
def test_bad_model_is_one_line_error(runner, tmp_path, make_digit, content):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(content)
    result = runner.invoke(cli, ["classify", str(make_digit()), "--model", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(bad) in lines[0]


def test_model_from_environment(runner, tmp_path, make_digit, monkeypatch):
    monkeypatch.setenv("DIGITCLI_MODEL", str(tmp_path / "absent.npz"))
    result = runner.invoke(cli, ["classify", str(make_digit())])
    assert result.exit_code == 1
    assert "model file not found" in result.stderr and "absent.npz" in result.stderr


def test_unwritable_output_is_usage_error(runner, tmp_path, make_digit):
    result = runner.invoke(
        cli, ["classify", str(make_digit()), "-o", str(tmp_path / "no" / "x.csv")]
    )
    assert result.exit_code == 2
    assert "cannot write" in result.stderr


def test_ctrl_c_exits_130_keeping_finished_rows(
    runner, tmp_path, make_digit, monkeypatch, csv_rows
):
    from digitcli import batch

    real = batch.classify_batches

    def interrupted(paths, model, **kw):
        for i, results in enumerate(real(paths, model, **{**kw, "batch_size": 1})):
            if i == 2:
                raise KeyboardInterrupt
            yield results

    monkeypatch.setattr(batch, "classify_batches", interrupted)
    images = [str(make_digit(d, f"{d}.png")) for d in range(5)]
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, ["classify", *images, "-o", str(out)])
    assert result.exit_code == 130
    rows = csv_rows(out.read_text())
    assert [r["path"] for r in rows] == images[:2]


def test_eval_shipped_model_json(runner):
    result = runner.invoke(cli, ["eval", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n"] == 360
    assert data["accuracy"] >= 0.985
    assert len(data["confusion_matrix"]) == 10
    assert data["model"]["test_accuracy"] == pytest.approx(data["accuracy"])


def test_eval_table(runner, kernel_model):
    path, _ = kernel_model
    result = runner.invoke(cli, ["eval", "--model", str(path)])
    assert result.exit_code == 0, result.output
    for word in (
        "accuracy",
        "per digit",
        "confusion matrix",
        "recorded: 2-fold CV",
        "(2 networks and the",  # rich wraps the rest: "kernel member per fold)"
        "kernel member per fold)",
    ):
        assert word in result.stdout


def test_eval_optdigits_csv(runner, tmp_path, digits, shipped_model):
    X, y = digits
    path = tmp_path / "optdigits.tes"
    lines = [
        ",".join(str(int(v)) for v in row) + f",{label}"
        for row, label in zip(X[:100], y[:100], strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(cli, ["eval", "--data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n"] == 100
    assert data["accuracy"] == pytest.approx((shipped_model.predict(X[:100])[0] == y[:100]).mean())


def test_eval_bad_csv_is_one_line(runner, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3\n")
    result = runner.invoke(cli, ["eval", "--data", str(path)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "line 1" in result.stderr


def test_eval_images(runner, tmp_path, make_digit):
    for d in range(10):
        make_digit(d, f"set/{d}/x.png", seed=d)
    result = runner.invoke(cli, ["eval", "--images", str(tmp_path / "set"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n"] == 10 and data["failed"] == 0
    assert data["accuracy"] >= 0.9  # clean synthetic digits: 10 of 10 with the shipped model


def test_eval_usage_errors(runner, tmp_path):
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("0," * 64 + "1\n")
    result = runner.invoke(cli, ["eval", "--data", str(csv_file), "--images", str(tmp_path)])
    assert result.exit_code == 2 and "use one of --data, --images and --numbers" in result.stderr
    result = runner.invoke(cli, ["eval", "--data", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["eval", "--images", str(tmp_path)])
    assert result.exit_code == 1 and "no digit folders" in result.stderr


# A tiny recipe: one small network, no distorted copies, glyphs or kernel member, 2 folds.
QUICK = [
    *("--hidden-layers", "24", "--max-iter", "25", "--augment", "0", "--synthetic", "0"),
    *("--pieces", "0"),
    *("--ensemble", "1", "--originals", "1", "--anneal-epochs", "0", "--kernel-weight", "0"),
    *("--folds", "2", "-j", "1"),
]
#: The one model trained with the kernel member (its fit takes most of a CLI training run).
KERNEL_ARGS = [
    *("--ensemble", "2", "--cv-ensemble", "--batch-size", "64", "--learning-rate", "0.01"),
    *("--originals", "2", "--anneal-epochs", "3", "--kernel-weight", "0.3"),
]


@pytest.fixture(scope="module")
def kernel_model(tmp_path_factory):
    """`digitcli train` with a 2-network ensemble and the kernel member, CV'd whole.

    One BLAS thread: on 2 cores the kernel member's solver otherwise spends most of its CPU
    time in spinning BLAS threads (measured: 0.5 s against 2.6 s idle, 10 s on a loaded
    machine). The fit then differs from a threaded one only in rounding (1e-10), which
    nothing here checks.
    """
    from threadpoolctl import threadpool_limits

    out = tmp_path_factory.mktemp("kernel") / "cv.npz"
    with threadpool_limits(limits=1):
        result = CliRunner().invoke(cli, ["train", *QUICK, *KERNEL_ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def test_train_writes_model_and_summary(runner, tmp_path):
    out = tmp_path / "m.npz"
    args = ["--augment", "1", "--synthetic", "2", "--pieces", "2", "--glyph-weight", "0.3"]
    result = runner.invoke(cli, ["train", *QUICK, *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "test accuracy:" in result.stderr and str(out) in result.stderr
    assert "synthetic=2" in result.stderr and "glyph_weight=0.3" in result.stderr
    model = model_io.load(out)
    assert model.metadata["recipe"]["hidden_layers"] == [24]
    assert model.metadata["recipe"]["augment"] == 1
    assert model.metadata["recipe"]["synthetic"] == 2
    assert model.metadata["recipe"]["glyph_weight"] == 0.3
    assert model.metadata["recipe"]["pieces"] == 2 and "pieces=2" in result.stderr
    [cut] = [s for s in model.metadata["sources"] if s["role"] == "pieces"]
    assert cut["weight"] == 0.3 and cut["n"] == len(datasets.piece_data(2)[1])


def test_train_is_deterministic(runner, tmp_path, digits):
    X, _ = digits
    probs = []
    for name in ("a.npz", "b.npz"):
        # Every source of randomness: the folds, two members' seeds, the glyphs' distorted
        # copies (made like --augment's, which test_training checks for a fixed seed).
        args = ["--synthetic", "2", "--ensemble", "2", "--seed", "5", "-q"]
        result = runner.invoke(cli, ["train", *QUICK, *args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        probs.append(model_io.load(tmp_path / name).predict_proba(X))
    np.testing.assert_array_equal(probs[0], probs[1])


def test_train_search_prints_table(runner, tmp_path, monkeypatch):
    from digitcli import recipe as recipes

    grid = {"hidden_layers": [(8,), (24,)], "ensemble": [1, 2]}
    monkeypatch.setattr(recipes, "SEARCH_GRID", grid)
    result = runner.invoke(cli, ["train", *QUICK, "--search", "--out", str(tmp_path / "s.npz")])
    assert result.exit_code == 0, result.output
    for layers in (8, 24):
        for k in (1, 2):
            assert f"layers={layers} alpha=0.01 augment=0 ensemble={k}" in result.stderr
    meta = model_io.load(tmp_path / "s.npz").metadata
    assert len(meta["search"]) == 4
    best = max(meta["search"], key=lambda r: r["cv_mean"])
    assert meta["cv"]["mean"] == pytest.approx(best["cv_mean"])
    assert meta["cv"]["networks_per_fold"] == meta["recipe"]["ensemble"]


def test_train_fast_preset_keeps_explicit_options(runner, tmp_path, monkeypatch):
    """--fast is FAST_RECIPE and FAST_FOLDS, except for the options given (no training)."""
    from digitcli import training
    from digitcli.recipe import FAST_FOLDS, FAST_RECIPE

    class Called(Exception):
        pass

    seen = {}

    def spy(recipe, **kw):
        seen.update(kw, recipe=recipe)
        raise Called

    monkeypatch.setattr(training, "train", spy)
    args = ["train", "--fast", "--max-iter", "30", "-j", "1", "--out", str(tmp_path / "f.npz")]
    result = runner.invoke(cli, [*args, "--validate-images", str(tmp_path)])
    assert isinstance(result.exception, Called), result.output
    assert seen["recipe"] == replace(FAST_RECIPE, max_iter=30)  # given explicitly: kept
    assert seen["recipe"].hidden_layers == (128,) and seen["recipe"].ensemble == 1
    assert seen["recipe"].synthetic == 50
    assert seen["folds"] == FAST_FOLDS == 3
    assert seen["validate_images"] == (str(tmp_path),)
    given = runner.invoke(cli, [*args, "--folds", "4", "--synthetic", "0", "--kernel-weight", "0"])
    assert isinstance(given.exception, Called), given.output
    assert seen["folds"] == 4
    assert seen["recipe"] == replace(FAST_RECIPE, max_iter=30, synthetic=0, kernel_weight=0)


def test_train_validate_images(runner, tmp_path, make_digit):
    for d in range(10):
        make_digit(d, f"val/{d}/a.png", seed=d)
    out = tmp_path / "v.npz"
    result = runner.invoke(
        cli, ["train", *QUICK, "--out", str(out), "--validate-images", str(tmp_path / "val")]
    )
    assert result.exit_code == 0, result.output
    [v] = model_io.load(out).metadata["validation"]
    assert v["n"] == 10 and v["images"] == str(tmp_path / "val") and v["failed"] == 0
    assert f"on 10 in {tmp_path / 'val'}" in result.stderr
    shown = runner.invoke(cli, ["eval", "--model", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "on 10 images in" in shown.stdout


@pytest.mark.slow
def test_train_fast_and_validate_images(runner, tmp_path, make_digit):
    for d in range(10):
        make_digit(d, f"val/{d}/a.png", seed=d)
    out = tmp_path / "fast.npz"
    result = runner.invoke(
        cli,
        [
            "train",
            "--fast",
            "--max-iter",
            "30",
            "-j",
            "1",
            "--out",
            str(out),
            "--validate-images",
            str(tmp_path / "val"),
        ],
    )
    assert result.exit_code == 0, result.output
    meta = model_io.load(out).metadata
    assert meta["recipe"]["hidden_layers"] == [128] and meta["recipe"]["ensemble"] == 1
    assert meta["recipe"]["synthetic"] == 50
    assert meta["recipe"]["max_iter"] == 30  # given explicitly: kept
    assert meta["cv"]["folds"] == 3
    [v] = meta["validation"]
    assert v["n"] == 10 and v["images"] == str(tmp_path / "val")
    assert f"on 10 in {tmp_path / 'val'}" in result.stderr
    shown = runner.invoke(cli, ["eval", "--model", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "on 10 images in" in shown.stdout


def test_train_cv_ensemble_scores_the_whole_ensemble_per_fold(kernel_model):
    out, result = kernel_model
    assert "2-fold CV:" in result.stderr
    assert "2 networks and the kernel member per fold" in result.stderr
    assert "anneal_epochs=3 batch_size=64 learning_rate=0.01 kernel_weight=0.3" in result.stderr
    assert "originals=2" in result.stderr
    model = model_io.load(out)
    meta = model.metadata
    assert meta["cv"]["networks_per_fold"] == 2 and len(meta["cv"]["scores"]) == 2
    assert meta["recipe"]["batch_size"] == 64 and meta["recipe"]["learning_rate"] == 0.01
    assert meta["recipe"]["originals"] == 2 and meta["recipe"]["anneal_epochs"] == 3
    assert meta["recipe"]["kernel_weight"] == 0.3 == model.kernel.weight
    assert meta["kernel"] == {"centres": 1437, "weight": 0.3}


def test_train_without_kernel_member(runner, tmp_path):
    out = tmp_path / "k0.npz"
    result = runner.invoke(cli, ["train", *QUICK, "--kernel-weight", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "one network per fold" in result.stderr and "kernel_weight=0\n" in result.stderr
    model = model_io.load(out)
    assert model.kernel is None and "kernel" not in model.metadata
    assert model.metadata["format_version"] == 1  # readable by digitcli before kernels
    shown = runner.invoke(cli, ["eval", "--model", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "(1 network per fold)" in shown.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--hidden-layers", "abc"],
        ["--hidden-layers", "0"],
        ["--jobs", "-2"],
        ["--folds", "1"],
        ["--batch-size", "0"],
        ["--learning-rate", "0"],
        ["--learning-rate", "nan"],
        ["--originals", "0"],
        ["--anneal-epochs", "-1"],
        ["--kernel-weight", "1"],
        ["--kernel-weight", "-0.1"],
        ["--kernel-weight", "nan"],
        ["--glyph-weight", "0"],
        ["--glyph-weight", "inf"],
    ],
)
def test_train_bad_options_exit_2(runner, tmp_path, args):
    result = runner.invoke(cli, ["train", *args, "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2
    assert not (tmp_path / "x.npz").exists()


def _run(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, check=False
    )


def test_classify_read_and_help_do_not_import_sklearn_or_joblib(make_digit):
    image = make_digit(6)
    code = (
        "import sys\n"
        "from digitcli.cli import cli\n"
        "for args in (['--help'], ['classify', sys.argv[1]], ['read', sys.argv[1]]):\n"
        "    try:\n"
        "        cli.main(args, prog_name='digitcli')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('sklearn', 'joblib', 'scipy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = _run(code, str(image))
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_python_dash_m(tmp_path, make_digit):
    image = make_digit(1)
    proc = subprocess.run(
        [sys.executable, "-m", "digitcli", "classify", str(image)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("path,digit,confidence,error")


def test_show_prints_grid_and_top3_and_saves(runner, tmp_path, make_digit):
    image = make_digit(5, "five.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "debug"
    result = runner.invoke(cli, ["show", str(image), str(bad), "--save", str(out)])
    assert result.exit_code == 1, result.output
    assert "five.png" in result.stdout and "confidence" in result.stdout
    assert "cannot identify image file" in result.stderr  # messages go to stderr
    assert "Traceback" not in result.output
    from PIL import Image

    with Image.open(out / "five_32x32.png") as big, Image.open(out / "five_8x8.png") as small:
        assert big.size == small.size == (256, 256)
    from digitcli.conversion.pipeline import features_from_paths

    grid = features_from_paths([str(image)])[0].reshape(8, 8).astype(int)
    first_row = " ".join(f"{v:>2}" if v else " ." for v in grid[0])
    assert first_row.split() == result.stdout.splitlines()[1].strip("│ ").split()[:8]


def test_show_draws_the_bitmap_beside_the_grid(runner, make_digit):
    from digitcli.conversion.pipeline import bitmaps_from_paths
    from digitcli.evaluation import bitmap_text

    image = make_digit(0, "zero.png", stroke=0.3)
    rows = bitmap_text(bitmaps_from_paths([str(image)])[0]).splitlines()
    assert len(rows) == 16 and all(len(row) == 32 for row in rows)
    drawn = runner.invoke(cli, ["show", str(image), "--bitmap"], env={"COLUMNS": "120"})
    assert drawn.exit_code == 0, drawn.output
    lines = drawn.stdout.splitlines()[1:17]
    for row, line in zip(rows, lines, strict=True):
        assert line.startswith("│ " + row)
    plain = runner.invoke(cli, ["show", str(image), "--no-bitmap"], env={"COLUMNS": "120"})
    assert "\u2588" not in plain.stdout and "\u2588" in drawn.stdout
    # By default the bitmap is drawn when the terminal is wide enough for it.
    wide = runner.invoke(cli, ["show", str(image)], env={"COLUMNS": "120"})
    narrow = runner.invoke(cli, ["show", str(image)], env={"COLUMNS": "80"})
    assert wide.stdout == drawn.stdout and "\u2588" not in narrow.stdout


def test_bitmap_text_draws_two_rows_per_line():
    from digitcli.evaluation import bitmap_text

    bitmap = np.zeros((4, 3), dtype=bool)
    bitmap[0, 0] = bitmap[1, 1] = bitmap[0, 2] = bitmap[1, 2] = True
    bitmap[3, 0] = True
    assert bitmap_text(bitmap) == "\u2580\u2584\u2588\n\u2584  "


def test_eval_errors_sheet(runner, tmp_path, make_digit):
    for d in range(10):
        make_digit(d, f"set/{d}/x.png", seed=d)
    (tmp_path / "set" / "3" / "bad.png").write_bytes(b"")
    sheet = tmp_path / "errors.png"
    result = runner.invoke(
        cli, ["eval", "--images", str(tmp_path / "set"), "--errors", str(sheet), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    misread = round((1 - data["accuracy"]) * data["n"])
    assert misread >= 1  # at least the broken file
    assert f"{misread} misread images drawn" in result.stderr
    from PIL import Image

    with Image.open(sheet) as img:
        assert img.width > 100 and img.height > 50


def test_eval_errors_needs_images(runner, tmp_path):
    result = runner.invoke(cli, ["eval", "--errors", str(tmp_path / "e.png")])
    assert result.exit_code == 2 and "--errors needs --images" in result.stderr


def test_classify_invert_option(runner, tmp_path, make_digit, csv_rows):
    from PIL import Image

    path = tmp_path / "white_on_black.png"
    Image.eval(Image.open(make_digit(7)).convert("L"), lambda v: 255 - v).save(path)
    auto = csv_rows(runner.invoke(cli, ["classify", str(path)]).stdout)[0]
    forced = csv_rows(runner.invoke(cli, ["classify", str(path), "--invert"]).stdout)[0]
    assert auto["digit"] != "" and auto["error"] == ""
    assert auto == forced
    wrong = csv_rows(runner.invoke(cli, ["classify", str(path), "--no-invert"]).stdout)[0]
    assert wrong != auto


def test_train_ensemble(runner, tmp_path):
    out = tmp_path / "e.npz"
    result = runner.invoke(cli, ["train", *QUICK, "--ensemble", "2", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = model_io.load(out)
    assert len(model.members) == 2 and model.metadata["members"] == 2
    assert model.metadata["recipe"]["ensemble"] == 2
    assert not np.array_equal(model.members[0][0][0], model.members[1][0][0])


def test_unreadable_input_is_a_row_not_a_usage_error(tmp_path, make_digit, csv_rows, unprivileged):
    """A file named on the command line that cannot be read: a row, exit 1 (not 2).

    Run as a command that mode 000 stops even as root (see the `unprivileged` fixture).
    """
    good = make_digit(2, "good.png")
    locked = make_digit(3, "locked.png")
    locked.chmod(0)
    args = [sys.executable, "-m", "digitcli", "classify", str(good), str(locked)]
    try:
        proc = subprocess.run(unprivileged(args), capture_output=True, text=True, check=False)
    finally:
        locked.chmod(0o644)
    assert proc.returncode == 1, proc.stderr
    rows = csv_rows(proc.stdout)
    assert [(r["path"], r["error"]) for r in rows] == [
        (str(good), ""),
        (str(locked), "permission denied"),
    ]
    assert rows[0]["digit"] == "2"
    assert "Usage:" not in proc.stderr and "Traceback" not in proc.stderr


def test_write_errors_are_one_line(runner, tmp_path, make_digit):
    result = runner.invoke(cli, ["classify", str(make_digit()), "-o", "/dev/full"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") <= 2
    assert "Traceback" not in result.output


def test_files_from_binary_and_non_utf8_names(runner, tmp_path, make_digit):
    odd = tmp_path / os.fsdecode(b"odd\xff.png")
    make_digit(1, "src.png").rename(odd)
    listing = tmp_path / "list.bin"
    listing.write_bytes(os.fsencode(str(odd)) + b"\n" + b"\x00\xfe\xff garbage\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, ["classify", "--files-from", str(listing), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    raw = out.read_bytes()
    assert os.fsencode(str(odd)) in raw  # the name is written back as its own bytes
    assert raw.count(b"\n") == 3 and b"\r" not in raw


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--alpha", "nan"], "finite"),
        (["--alpha", "inf"], "finite"),
        (["--learning-rate", "inf"], "finite"),
        (["--out", "/proc/no/model.npz"], "--out"),
    ],
)
def test_train_refuses_bad_values_before_training(runner, args, match):
    result = runner.invoke(cli, ["train", *QUICK, *args])
    assert result.exit_code == 2, result.output
    assert match in result.stderr


def test_eval_errors_sheet_without_png_suffix(runner, tmp_path, make_digit):
    make_digit(1, "set/1/a.png")
    (tmp_path / "set" / "1" / "broken.png").write_bytes(b"")
    sheet = tmp_path / "misread"
    result = runner.invoke(cli, ["eval", "--images", str(tmp_path / "set"), "--errors", str(sheet)])
    assert result.exit_code == 0, result.output
    assert sheet.read_bytes().startswith(b"\x89PNG")


def test_eval_csv_with_byte_order_mark(runner, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(("0," * 64 + "3\n").encode("utf-8-sig") * 1 + ("0," * 64 + "4\n").encode())
    result = runner.invoke(cli, ["eval", "--data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 2


def test_classify_progress_bar_draws_without_a_thread(tmp_path, make_digit, monkeypatch):
    import threading

    from digitcli import cli as cli_module

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for d in range(5):
        make_digit(d, f"in/{d}.png")
    monkeypatch.setattr(sys, "stderr", Terminal())
    threads = threading.active_count()
    with cli_module._files_progress(True, "classifying", (str(tmp_path / "in"),), None) as tick:
        assert threading.active_count() == threads  # the workers can still be forked
        tick(3)
        drawn = sys.stderr.getvalue()
    assert "classifying" in drawn and "3/5" in drawn


@pytest.mark.parametrize("command", [[], ["classify"], ["eval"], ["show"], ["train"]])
def test_help_imports_neither_training_nor_pillow(command):
    """--help (and so shell completion) stays quick: no scikit-learn, training or Pillow."""
    code = (
        "import sys\n"
        "from digitcli.cli import cli\n"
        "try:\n"
        f"    cli.main(args={command!r} + ['--help'], prog_name='digitcli')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('digitcli.training', 'PIL', 'sklearn')\n"
        "print('loaded:', [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage: digitcli" in done.stdout
    assert done.stdout.splitlines()[-1] == "loaded: []"
