from __future__ import annotations

import csv
import io

import pytest

from digitcli import batch, datasets
from digitcli.errors import DataError
from digitcli.evaluation import evaluate_folder


def test_iter_inputs_walks_sorted_and_skips(tmp_path, make_digit):
    make_digit(1, "b/2.png")
    make_digit(1, "b/1.PNG")
    make_digit(1, "a/z/deep.jpg")
    make_digit(1, "a/.hidden.png")
    make_digit(1, ".secret/x.png")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    explicit = tmp_path / "explicit.data"
    explicit.write_text("x")
    stats = batch.WalkStats()
    got = list(batch.iter_inputs([tmp_path, explicit], stats))
    rel = [str(p).replace(str(tmp_path) + "/", "") for p in got]
    assert rel == ["a/z/deep.jpg", "b/1.PNG", "b/2.png", "explicit.data"]
    assert stats.skipped == 4  # .hidden.png, notes.txt, .secret, explicit.data (in the folder walk)


def test_is_image_name():
    assert batch.is_image_name("A.JPEG") and batch.is_image_name("x.webp")
    assert not batch.is_image_name(".x.png") and not batch.is_image_name("x.txt")


def test_classify_paths_keeps_order_with_errors(tmp_path, make_digit, shipped_model):
    good = [make_digit(d, f"{d}.png", seed=d) for d in range(5)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    paths = [str(good[0]), str(bad), *map(str, good[1:]), str(tmp_path / "missing.png")]
    results = list(batch.classify_paths(paths, shipped_model, batch_size=2))
    assert [r.path for r in results] == paths
    assert results[1].error == "cannot identify image file" and results[1].digit is None
    assert results[-1].error == "file not found"
    for r in results[:1] + results[2:-1]:
        assert r.error == "" and 0 <= r.digit <= 9 and 0 < r.confidence <= 1
        assert r.probabilities.sum() == pytest.approx(1)


def test_csv_writer_round_trips_odd_names():
    names = ["a,b.png", 'quo"te.png', "new\nline.png", "=SUM(A1).png", "ünï©ødé.png"]
    out = io.StringIO()
    writer = batch.CsvWriter(out, probabilities=True)
    for i, name in enumerate(names):
        if i % 2:
            writer.write(batch.Result(name, error="no digit found"))
        else:
            import numpy as np

            p = np.full(10, 0.05)
            p[i] = 0.55
            writer.write(batch.Result(name, i, 0.55, p))
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    header = ["path", "digit", "confidence", "error", "flag"] + [f"p{d}" for d in range(10)]
    assert rows[0] == header
    assert [r[0] for r in rows[1:]] == names
    assert rows[1][1:5] == ["0", "0.5500", "", ""] and rows[1][5] == "0.5500"
    assert rows[2][1:5] == ["", "", "no digit found", ""] and rows[2][5:] == [""] * 10
    assert "\r" not in out.getvalue().replace("\r\n", "")  # \n line ends, for shell tools
    assert out.getvalue().endswith(",0.0500\n")


def test_labelled_folder_needs_digit_folders(tmp_path):
    with pytest.raises(DataError, match="no digit folders"):
        list(datasets.iter_labelled_images(tmp_path))


def test_evaluate_folder(tmp_path, make_digit, shipped_model):
    for d in (3, 7):
        make_digit(d, f"set/{d}/a.png", seed=d)
    (tmp_path / "set" / "7" / "broken.png").write_bytes(b"")
    y_true, y_pred, results = evaluate_folder(tmp_path / "set", shipped_model)
    assert list(y_true) == [3, 7, 7]
    assert y_pred[2] == -1 and results[2].error


def test_big_files_are_tasks_of_their_own(tmp_path):
    """Chunks hold up to BATCH_SIZE files but about CHUNK_BYTES of them: photos go alone."""
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    paths = []
    for i in range(3):
        path = tmp_path / f"big{i}.png"
        Image.fromarray(noise).save(path)  # noise does not compress: about 480 KB
        assert path.stat().st_size > batch.CHUNK_BYTES
        paths.append(str(path))
    for i in range(5):
        path = tmp_path / f"small{i}.png"
        Image.new("L", (28, 28), 255).save(path)
        paths.append(str(path))
    paths.append(str(tmp_path / "missing.png"))  # no size: counts as empty
    chunks = [chunk for chunk, _, _, _ in batch.iter_converted(paths, chunk_size=4)]
    assert [len(c) for c in chunks] == [1, 1, 1, 4, 2]
    assert [p for c in chunks for p in c] == paths


def test_low_confidence_flags_only_below_the_level():
    assert batch.low_confidence(0.5, None) == ""
    assert batch.low_confidence(0.5, 0.5) == ""  # at the level: not flagged
    assert batch.low_confidence(0.49994, 0.5) == "low confidence: 0.4999 < 0.5"
    assert batch.low_confidence(0.0, 1) == "low confidence: 0.0000 < 1"
