"""classify as a batch tool: inputs, formats, parallel order, a hostile corpus, Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from digitcli import batch
from digitcli.cli import cli
from digitcli.synth import render_digit


def test_glob_patterns_are_expanded(tmp_path, make_digit):
    make_digit(1, "a/one.png")
    make_digit(2, "a/b/two.png")
    make_digit(3, "a/b/three.jpg")
    got = list(batch.iter_inputs([str(tmp_path / "a" / "**" / "*.png")]))
    assert got == [str(tmp_path / "a" / "b" / "two.png"), str(tmp_path / "a" / "one.png")]
    missing = str(tmp_path / "nothing" / "*.png")
    assert list(batch.iter_inputs([missing])) == [missing]


def test_files_from_file_and_stdin(runner, tmp_path, make_digit, csv_rows):
    images = [str(make_digit(d, f"{d}.png")) for d in range(3)]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(images[:2]) + "\n\n")
    result = runner.invoke(cli, ["classify", "--files-from", str(listing)])
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in csv_rows(result.stdout)] == images[:2]
    result = runner.invoke(
        cli, ["classify", images[2], "--files-from", "-"], input=images[0] + "\n"
    )
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in csv_rows(result.stdout)] == [images[2], images[0]]


def test_no_inputs_is_a_usage_error(runner):
    result = runner.invoke(cli, ["classify"])
    assert result.exit_code == 2 and "--files-from" in result.stderr


def test_jsonl_output(runner, tmp_path, make_digit):
    image = make_digit(4)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    result = runner.invoke(
        cli, ["classify", str(image), str(bad), "--format", "jsonl", "--probabilities"]
    )
    assert result.exit_code == 1, result.output
    good, broken = [json.loads(line) for line in result.stdout.splitlines()]
    assert good["path"] == str(image) and 0 <= good["digit"] <= 9 and good["error"] == ""
    assert len(good["probabilities"]) == 10
    assert broken["digit"] is None and broken["probabilities"] is None
    assert broken["error"] == "cannot identify image file"


def test_min_confidence_marks_rows_and_keeps_the_digit(runner, make_digit, csv_rows):
    image = make_digit(6)
    result = runner.invoke(cli, ["classify", str(image), "--min-confidence", "1"])
    assert result.exit_code == 0, result.output
    [row] = csv_rows(result.stdout)
    # A weak reading is flagged in its own column: an empty error always means "read".
    assert row["digit"] != "" and row["flag"].startswith("low confidence: ")
    assert row["error"] == ""
    assert "1 below --min-confidence" in result.stderr
    result = runner.invoke(cli, ["classify", str(image), "--min-confidence", "0"])
    assert csv_rows(result.stdout)[0]["flag"] == ""
    assert runner.invoke(cli, ["classify", str(image), "--min-confidence", "2"]).exit_code == 2
    nan = runner.invoke(cli, ["classify", str(image), "--min-confidence", "nan"])
    assert nan.exit_code == 2 and "finite" in nan.stderr  # nan would flag nothing, silently


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "loky"])
def test_parallel_conversion_keeps_input_order(tmp_path, shipped_model, monkeypatch, fork):
    monkeypatch.setattr("digitcli.parallel._can_fork", lambda: fork)
    paths = []
    for i in range(40):
        path = tmp_path / f"{i:03d}.png"
        if i % 7 == 3:
            path.write_bytes(b"broken")
        else:
            render_digit(i % 10, seed=i, size=(28, 28)).save(path)
        paths.append(str(path))
    serial = list(batch.classify_paths(paths, shipped_model, jobs=1, batch_size=8))
    parallel = list(batch.classify_paths(iter(paths), shipped_model, jobs=2, batch_size=8))
    assert [r.path for r in parallel] == paths
    assert [(r.digit, r.error) for r in parallel] == [(r.digit, r.error) for r in serial]


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_stopping_early_is_quiet(tmp_path, shipped_model, monkeypatch, capfd, fork):
    """Closing the batches mid-run (the CLI on Ctrl-C) or dropping them stops the pool.

    Quiet: no warning (about work done but never used, or anything else), no error in a
    finaliser, nothing on stderr from the workers; and the idle workers end (soon after:
    the executor's own thread lets them go).
    """
    import gc
    import multiprocessing
    import warnings

    monkeypatch.setattr("digitcli.parallel._can_fork", lambda: fork)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    paths = []
    for i in range(3):
        render_digit(i, seed=i, size=(28, 28)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    before = set(multiprocessing.active_children())

    def workers_end() -> bool:
        deadline = time.monotonic() + 10
        while set(multiprocessing.active_children()) - before:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def started():
        batches = batch.classify_batches(paths, shipped_model, jobs=2, batch_size=1)
        [first] = next(batches)
        assert (first.path, first.digit, first.error) == (paths[0], 0, "")
        assert set(multiprocessing.active_children()) - before  # the pool's workers
        # Let the other two finish, so that there is done work that is never used.
        time.sleep(0.5)
        return batches

    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        closed = started()
        closed.close()  # as the CLI does on Ctrl-C
        assert workers_end()
        with pytest.raises(StopIteration):
            next(closed)
        abandoned = started()
        del abandoned  # a caller that stops reading and drops it
        gc.collect()
        assert workers_end()
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert unraisable == []
    assert capfd.readouterr().err == ""


def make_hostile_corpus(root, png_header) -> dict[str, str]:
    """Files that break naive tools, and the error each must get ('' = a digit)."""
    root.mkdir()
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, error: str) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[str(path)] = error

    good = io.BytesIO()
    render_digit(3, seed=1, size=(64, 64)).save(good, format="PNG")
    put("empty.png", b"", "cannot identify image file")
    put("truncated.png", good.getvalue()[:120], "truncated file")
    put("random.png", os.urandom(3000), "cannot identify image file")
    put("text.png", b"hello, this is text\n" * 20, "cannot identify image file")
    put(
        "header_only.jpg",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
        "*",
    )
    put("bomb.png", png_header(60_000, 60_000), "too large: 3600000000 pixels")
    for name, colour in (("blank_white.png", 255), ("blank_black.png", 0)):
        buf = io.BytesIO()
        Image.new("L", (64, 64), colour).save(buf, format="PNG")
        put(name, buf.getvalue(), "no digit found")
    one = io.BytesIO()
    Image.new("L", (1, 1), 0).save(one, format="PNG")
    put("one_pixel.png", one.getvalue(), "no digit found")
    huge = io.BytesIO()
    Image.new("1", (7000, 7000), 1).save(huge, format="PNG")
    put("huge_blank.png", huge.getvalue(), "no digit found")
    for name in (
        "comma,name.png",
        'quote"name.png',
        "=SUM(A1).png",
        "ünïcødé ✓.png",
        "new\nline.png",
        "deep/er/nested/ok.png",
    ):
        put(name, good.getvalue(), "")
    (root / "folder.png").mkdir()  # a folder named like an image: walked, not read
    put("folder.png/inside.png", good.getvalue(), "")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink(".", root / "self_link")  # a link to a folder: not followed
    return expected


def test_hostile_corpus(runner, tmp_path, png_header):
    root = tmp_path / "hostile"
    expected = make_hostile_corpus(root, png_header)
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, ["classify", str(root), "-o", str(out), "--jobs", "2"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(expected)
    for path, error in expected.items():
        row = rows[path]
        if error == "":
            assert row["error"] == "" and row["digit"] in list("0123456789"), row
        elif error == "*":
            assert row["error"] and row["digit"] == "", row
        else:
            assert row["error"] == error, row
    assert "skipped" in result.stderr  # the links


def test_symlink_loop_given_directly_is_an_error_row(runner, tmp_path, csv_rows):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    result = runner.invoke(cli, ["classify", str(tmp_path / "a")])
    assert result.exit_code == 1
    [row] = csv_rows(result.stdout)
    assert row["error"].startswith("cannot read image")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "whole_group", "code"),
    [
        (signal.SIGINT, False, 130),
        (signal.SIGINT, True, 130),  # Ctrl-C in a terminal: the workers get it too
        (signal.SIGTERM, False, 143),
        (signal.SIGHUP, True, 129),  # the terminal closed
    ],
    ids=["ctrl-c-main", "ctrl-c-terminal", "sigterm", "sighup-terminal"],
)
def test_signals_keep_whole_rows_and_leave_no_worker(tmp_path, signum, whole_group, code):
    folder = tmp_path / "many"
    folder.mkdir()
    n = 30_000  # several seconds of work: the signal lands mid-run even on a fast machine
    for d in range(10):
        render_digit(d, seed=d, size=(28, 28)).save(tmp_path / f"{d}.png")
    for i in range(n):  # links: the files cost no time to make
        os.link(tmp_path / f"{i % 10}.png", folder / f"{i:05d}.png")
    out = tmp_path / "out.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitcli", "classify", str(folder), "-o", str(out), "-j", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group of its own, like a job in a terminal
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and not workers:
            if out.exists() and out.stat().st_size > 20_000:
                workers = _children(proc.pid)
            time.sleep(0.05)
        assert workers
        if whole_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == code, err
    assert b"Traceback" not in err
    text = out.read_bytes().decode("utf-8")
    assert text.endswith("\n")  # the last row is whole
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["path", "digit", "confidence", "error", "flag"]
    assert 100 < len(rows) - 1 < n
    names = [os.path.basename(r[0]) for r in rows[1:]]
    assert names == [f"{i:05d}.png" for i in range(len(names))]  # in order, none lost
    assert all(len(r) == 5 and r[1] != "" for r in rows[1:])
    time.sleep(0.5)
    for pid in workers:  # no orphan left converting
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_glob_through_a_link_loop_lists_each_file_once(tmp_path, make_digit):
    make_digit(1, "g/d/a.png")
    os.symlink(".", tmp_path / "g" / "d" / "self")
    stats = batch.WalkStats()
    got = list(batch.iter_inputs([str(tmp_path / "g" / "**" / "*.png")], stats))
    assert got == [str(tmp_path / "g" / "d" / "a.png")]


def test_link_to_a_folder_named_like_an_image_is_skipped(tmp_path, make_digit):
    make_digit(1, "real/a.png")
    os.symlink(tmp_path / "real", tmp_path / "x.png")
    stats = batch.WalkStats()
    got = list(batch.iter_inputs([tmp_path], stats))
    assert got == [str(tmp_path / "real" / "a.png")]
    assert stats.skipped == 1
