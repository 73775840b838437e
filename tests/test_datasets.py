from __future__ import annotations

import numpy as np
import pytest

from digitcli import datasets, training
from digitcli import model as model_io
from digitcli.cli import cli
from digitcli.conversion.pipeline import features_from_paths
from digitcli.errors import DataError
from digitcli.synth import segment_digit

#: A recipe small enough for a test (about a second), big enough to learn a new style.
TINY = training.Recipe(
    hidden_layers=(64,),
    max_iter=60,
    augment=0,
    ensemble=1,
    synthetic=0,
    pieces=0,
    originals=1,
    anneal_epochs=0,
    kernel_weight=0.0,
)


def write_style(root, per_digit: int, first_seed: int = 0):
    """A labelled folder root/<digit>/<n>.png of digits in the tests' "user style"."""
    for d in range(10):
        (root / str(d)).mkdir(parents=True, exist_ok=True)
        for i in range(per_digit):
            seed = first_seed + d * per_digit + i
            segment_digit(d, seed=seed).save(root / str(d) / f"{i:03d}.png")
    return root


def check_dataset(X, y, source, n):
    assert X.shape == (n, 64) and X.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    assert X.min() >= 0 and X.max() <= 16 and np.all(np.rint(X) == X)
    assert source.n == n and sum(source.counts) == n and len(source.counts) == 10
    np.testing.assert_array_equal(source.counts, np.bincount(y, minlength=10))
    assert source.sha256 == datasets.content_hash(X, y) and len(source.sha256) == 64


def test_digits_dataset():
    X, y, source = datasets.digits()
    check_dataset(X, y, source, 1797)
    assert source.kind == "digits" and source.path is None and source.skipped == 0
    assert datasets.digits()[2] == source  # the same data, the same hash
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(X, load_digits().data)
    np.testing.assert_array_equal(y, load_digits().target)


def test_content_hash_is_of_the_values_not_the_dtype():
    X = np.arange(128).reshape(2, 64) % 17
    y = np.array([3, 4])
    h = datasets.content_hash(X, y)
    assert h == datasets.content_hash(X.astype(np.uint8), y.astype(np.int32))
    assert h != datasets.content_hash(X, y[::-1])
    changed = X.copy()
    changed[1, 5] += 1
    assert h != datasets.content_hash(changed, y)


def test_optdigits_csv_dataset(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("0," * 64 + "3\n" + ",".join(["16"] * 64) + ",9\n" + "1," * 64 + "3\n")
    X, y, source = datasets.optdigits_csv(path)
    check_dataset(X, y, source, 3)
    assert source.kind == "optdigits-csv" and source.path == str(path)
    assert source.counts[3] == 2 and source.counts[9] == 1
    path.write_text("0," * 64 + "12\n")
    with pytest.raises(DataError, match="label 12"):
        datasets.optdigits_csv(path)


def test_labelled_folder_dataset(tmp_path):
    root = write_style(tmp_path / "set", 2)
    (root / "4" / "broken.png").write_bytes(b"not a png")
    (root / "4" / "notes.txt").write_text("not an image")
    X, y, source = datasets.labelled_folder(root)
    check_dataset(X, y, source, 20)
    assert source.kind == "images" and source.path == str(root) and source.skipped == 1
    assert source.counts == (2,) * 10
    # the classify conversion, in the folder's order
    paths = [str(root / str(d) / f"{i:03d}.png") for d in range(10) for i in range(2)]
    np.testing.assert_array_equal(X, np.vstack(features_from_paths(paths)))
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 2))
    assert datasets.labelled_folder(root, jobs=2)[2] == source  # the same with workers


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ("missing", "is not a folder"),
        ("no digit folders", "no digit folders"),
        ("empty digit folders", "no images found"),
        ("only broken images", "none of the 2 images"),
    ],
)
def test_labelled_folder_errors(tmp_path, layout, match):
    root = tmp_path / "set"
    if layout != "missing":
        root.mkdir()
    if layout == "no digit folders":
        segment_digit(3, seed=0).save(root / "a.png")
    if layout == "empty digit folders":
        (root / "3").mkdir()
    if layout == "only broken images":
        (root / "3").mkdir()
        (root / "3" / "a.png").write_bytes(b"")
        (root / "3" / "b.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match=match):
        datasets.labelled_folder(root)


def test_synthetic_dataset():
    X, y, source = datasets.synthetic(3)
    check_dataset(X, y, source, 30)
    assert source.kind == "synthetic" and source.path is None
    np.testing.assert_array_equal(X, training.synthetic_data(3)[0])
    with pytest.raises(ValueError, match="per_digit"):
        datasets.synthetic(0)


def test_number_pieces_are_the_digits_as_the_reader_cuts_them():
    X, y = datasets.number_pieces(0)
    text, options = datasets._piece_number(0)
    digits = [int(c) for c in text if c.isdigit()]
    assert X.dtype == np.uint8 and X.shape == (len(y), 64) and X.max() <= 16
    assert len(y) <= len(digits) and set(y.tolist()) <= set(digits)
    assert np.all(X.sum(axis=1) > 0)
    again = datasets.number_pieces(0)
    np.testing.assert_array_equal(again[0], X)
    np.testing.assert_array_equal(again[1], y)
    # The reader's pieces of most digits are found among its candidates.
    found = sum(len(datasets.number_pieces(i)[1]) for i in range(8))
    wanted = sum(sum(c.isdigit() for c in datasets._piece_number(i)[0]) for i in range(8))
    assert found >= 0.8 * wanted


def test_pieces_dataset_and_glyph_data():
    X, y, source = datasets.pieces(3)
    parts = [datasets.number_pieces(i) for i in range(3)]
    np.testing.assert_array_equal(X, np.vstack([p[0] for p in parts]))
    np.testing.assert_array_equal(y, np.concatenate([p[1] for p in parts]))
    check_dataset(X, y, source, len(y))
    assert source.kind == "synthetic" and "3 numbers" in source.name
    Xg, yg = datasets.glyph_data(2, 3)
    Xs, ys = datasets.synthetic_data(2)
    np.testing.assert_array_equal(Xg, np.vstack([Xs, X]))
    np.testing.assert_array_equal(yg, np.concatenate([ys, y]))
    assert datasets.glyph_data(2, 0)[0] is Xs
    assert datasets.glyph_data(0, 0)[0].shape == (0, 64)
    with pytest.raises(ValueError, match="numbers"):
        datasets.pieces(0)


def test_holdout_is_stratified_disjoint_and_fixed():
    y = np.concatenate([np.repeat(np.arange(10), 10), [3, 3, 7]])
    y = np.concatenate([y, [5]])  # digit 5: 11 rows
    fit, held = training.holdout_indices(y, 0.2)
    assert not set(fit) & set(held) and len(fit) + len(held) == len(y)
    assert list(np.bincount(y[held], minlength=10)) == [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    np.testing.assert_array_equal(held, training.holdout_indices(y, 0.2)[1])
    assert len(training.holdout_indices(y, 0.0)[1]) == 0
    # a digit with a single image keeps it for fitting
    assert list(training.holdout_indices(np.array([1, 2, 2]), 0.9)[1]) == [1]
    with pytest.raises(ValueError):
        training.holdout_indices(y, 1.0)


def test_extra_images_are_fitted_like_originals_with_their_weight(digits, monkeypatch):
    X, y = digits
    seen = []

    def fake_fit(Xa, ya, recipe, seed, sample_weight=None):
        seen.append((Xa, ya, sample_weight))
        return ()

    monkeypatch.setattr(training, "fit_network", fake_fit)
    recipe = training.Recipe(augment=1, ensemble=1, synthetic=0, pieces=0, originals=2)
    extra = (X[100:110], y[100:110], np.full(10, 3.0))
    training.fit_recipe(X[:40], y[:40], recipe, seed=0, extra=extra)
    [(Xa, ya, weight)] = seen
    assert Xa.shape == (40 * 3 + 10 * 3, 64)
    np.testing.assert_array_equal(Xa[120:130], X[100:110])  # the extra originals ...
    np.testing.assert_array_equal(Xa[140:150], X[100:110])  # ... again, after their copies
    assert not np.array_equal(Xa[130:140], X[100:110])  # the copies are distorted
    np.testing.assert_array_equal(ya[120:], np.tile(y[100:110], 3))
    np.testing.assert_array_equal(weight, [1.0] * 120 + [3.0] * 30)


def test_training_on_a_user_style_reads_it_much_better(tmp_path):
    """The acceptance: a few hundred of a writer's digits lift the held-out ones a lot."""
    _, _, digits_source = base = datasets.digits()
    before = training.train(TINY, folds=2, n_jobs=1, base=base)
    user = datasets.labelled_folder(write_style(tmp_path / "form", 50))  # 500 images
    after = training.train(
        TINY,
        folds=2,
        n_jobs=1,
        base=base,
        images=[user],
        holdout_images=0.4,
        baseline=before.model,
    )
    [record] = [s for s in after.sources if s["role"] == "images"]
    assert record["n_fit"] == 300 and record["n_holdout"] == 200
    print(
        f"user-style holdout: {record['baseline_accuracy']:.3f} without --images, "
        f"{record['holdout_accuracy']:.3f} with; Digits test split "
        f"{before.test_accuracy:.3f} -> {after.test_accuracy:.3f}"
    )
    assert record["baseline_accuracy"] < 0.7  # Digits alone reads this style badly
    assert record["holdout_accuracy"] >= record["baseline_accuracy"] + 0.25
    assert record["holdout_accuracy"] >= 0.85
    assert after.test_accuracy >= before.test_accuracy - 0.03  # Digits is not forgotten
    # the held-out part was scored, not fitted: the same figure from the model itself
    X, y, _ = user
    _, held = training.holdout_indices(y, 0.4)
    direct = float((after.model.predict(X[held])[0] == y[held]).mean())
    assert direct == record["holdout_accuracy"]
    # every source is recorded, and the metadata survives the model file
    path = model_io.save(after.model, tmp_path / "adapted.npz")
    meta = model_io.load(path).metadata
    kinds = [(s["role"], s["kind"]) for s in meta["sources"]]
    assert kinds == [("base", "digits"), ("images", "images")]
    assert meta["sources"][0]["sha256"] == digits_source.sha256
    assert meta["sources"][1] == record
    assert meta["sources"][1]["counts"] == [50] * 10 and meta["holdout_images"] == 0.4
    assert meta["split"]["data"] == "sklearn.datasets.load_digits"


def test_images_weight_changes_the_fit(tmp_path):
    user = datasets.labelled_folder(write_style(tmp_path / "form", 4))
    recipe = training.Recipe(**{**TINY.__dict__, "max_iter": 5})

    def first_layer(weight):
        result = training.train(recipe, folds=2, n_jobs=1, images=[user], images_weight=weight)
        return result.model.members[0][0][0]

    assert not np.allclose(first_layer(1.0), first_layer(4.0))
    with pytest.raises(ValueError, match="images_weight"):
        training.train(recipe, folds=2, n_jobs=1, images=[user], images_weight=0)


TINY_OPTIONS = [
    "--hidden-layers=16",
    "--max-iter=5",
    "--augment=0",
    "--ensemble=1",
    "--synthetic=0",
    "--pieces=0",
    "--originals=1",
    "--anneal-epochs=0",
    "--kernel-weight=0",
    "--folds=2",
    "-j1",
]


def test_cli_train_with_images(runner, tmp_path):
    root = write_style(tmp_path / "form", 3)
    out = tmp_path / "m.npz"
    args = ["train", *TINY_OPTIONS, "--images", str(root), "--holdout-images", "0.34"]
    result = runner.invoke(cli, [*args, "--images-weight", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"added:         30 images from {root}: 20 fitted at weight 2, 10 held out" in (
        result.output
    )
    assert f"on 10 from {root} (shipped model: " in result.output
    [record] = [s for s in model_io.load(out).metadata["sources"] if s["role"] == "images"]
    assert record["weight"] == 2.0 and record["n_holdout"] == 10
    shown = runner.invoke(cli, ["eval", "--model", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "held-out images of" in shown.output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "is not a folder"),
        (lambda root: root.mkdir(), "has no digit folders"),
        (lambda root: (root / "7").mkdir(parents=True), "no images found in"),
    ],
)
def test_cli_train_images_errors_are_one_line(runner, tmp_path, make, message):
    root = tmp_path / "form"
    make(root)
    out = tmp_path / "m.npz"
    result = runner.invoke(cli, ["train", *TINY_OPTIONS, "--images", str(root), "--out", str(out)])
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_cli_train_options_are_checked(runner, tmp_path):
    bad = (["--images-weight", "0"], ["--holdout-images", "1"], ["--holdout-images", "nan"])
    for option in bad:
        result = runner.invoke(cli, ["train", *option, "--out", str(tmp_path / "m.npz")])
        assert result.exit_code == 2, (option, result.output)
