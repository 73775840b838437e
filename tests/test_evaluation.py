from __future__ import annotations

import numpy as np
import pytest

from digitcli.datasets import load_optdigits_csv
from digitcli.errors import DataError
from digitcli.evaluation import compute_metrics, render_metrics


def test_metrics_match_scikit_learn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 10, 500))
    y_pred[y_pred == 9] = 8  # a class never predicted: zero division
    m = compute_metrics(y_true, y_pred)
    assert m["n"] == 500
    assert m["accuracy"] == pytest.approx((y_true == y_pred).mean())
    np.testing.assert_array_equal(
        m["confusion_matrix"], confusion_matrix(y_true, y_pred, labels=range(10))
    )
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(10), zero_division=0)
    for d, row in enumerate(m["per_class"]):
        assert row["precision"] == pytest.approx(p[d])
        assert row["recall"] == pytest.approx(r[d])
        assert row["f1"] == pytest.approx(f[d])
        assert row["support"] == s[d]
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=range(10), average=avg, zero_division=0
        )
        assert m[avg] == pytest.approx({"precision": p, "recall": r, "f1": f})


def test_failed_conversions_count_as_misses():
    y_true = np.array([1, 1, 2, 2])
    y_pred = np.array([1, -1, 2, 2])
    m = compute_metrics(y_true, y_pred)
    assert m["accuracy"] == 0.75
    assert m["failed"] == 1
    assert m["per_class"][1]["recall"] == 0.5
    assert m["per_class"][1]["precision"] == 1.0
    assert np.sum(m["confusion_matrix"]) == 3


def test_optdigits_csv_with_and_without_header(tmp_path):
    rows = ["0," * 64 + "3", ",".join(["16"] * 64) + ",9", ""]
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(rows))
    headed = tmp_path / "headed.csv"
    headed.write_text(",".join(f"f{i}" for i in range(64)) + ",label\n" + "\n".join(rows))
    for path in (plain, headed):
        X, y = load_optdigits_csv(path)
        assert X.shape == (2, 64) and list(y) == [3, 9] and X.max() == 16


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0," * 64 + "3\n" + "1,2,3\n", "line 2: 3 values"),
        ("0," * 64 + "3\n" + "0," * 63 + "17,3\n", "line 2: feature values must be 0..16"),
        ("0," * 64 + "12\n", "line 1: label 12"),
        ("0," * 64 + "3\n" + "a," * 64 + "3\n", "line 2: not all integers"),
        ("", "no data rows"),
    ],
)
def test_optdigits_csv_errors_name_the_line(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_optdigits_csv(path)


def test_optdigits_binary_file(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError):
        load_optdigits_csv(path)


def test_render_metrics_builds_three_tables():
    from rich.console import Console

    m = compute_metrics(np.array([0, 1, 2]), np.array([0, 1, 1]))
    console = Console(record=True, width=100)
    for r in render_metrics(m, "title here", ["recorded: x"]):
        console.print(r)
    text = console.export_text()
    assert "title here" in text and "0.6667" in text and "confusion matrix" in text
