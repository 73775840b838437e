"""A batch tool people can trust: no hang, no external program, no lost file, bounded memory.

Every hostile input here is made by the test: a killed worker, a FIFO, a fake Ghostscript,
a sparse 2 GiB PNG chunk, /dev/zero as a path list, 1000 nested folders, names that are not
UTF-8, an -o that is an input, a second run on a locked -o, a symlink planted for --save.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from digitcli import batch
from digitcli.cli import cli
from digitcli.conversion import decode, pipeline
from digitcli.errors import DataError, ImageError
from digitcli.synth import render_digit


def _features(path):
    [out] = pipeline.features_from_paths([str(path)])
    if isinstance(out, ImageError):
        raise out
    return out


def _digits(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:04d}.png"
        render_digit(i % 10, seed=i, size=(28, 28)).save(path)
        paths.append(str(path))
    return paths


_KILLER = "killer.png"
_PARENT = os.getpid()


def _deadly_convert(chunk, invert):
    """batch.convert_chunk, but a worker given the killer file dies on the spot (SIGKILL)."""
    if any(p.endswith(_KILLER) for p in chunk) and os.getpid() != _PARENT:
        os.kill(os.getpid(), signal.SIGKILL)
    return _CONVERT(chunk, invert)


_CONVERT = batch.convert_chunk


def test_a_killed_worker_costs_only_its_file(tmp_path, monkeypatch):
    """A worker killed mid-file (a crashing decoder, the OOM killer): no hang, one error row."""
    paths = _digits(tmp_path, 40)
    killer = str(tmp_path / _KILLER)
    render_digit(3).save(killer)
    paths.insert(17, killer)
    monkeypatch.setattr(batch, "convert_chunk", _deadly_convert)  # forked workers inherit it
    monkeypatch.setattr("digitcli.parallel._can_fork", lambda: True)
    started = time.monotonic()
    chunks = batch.iter_converted(paths, jobs=2, chunk_size=8)
    got = [row for chunk in chunks for row in zip(*chunk, strict=True)]
    assert time.monotonic() - started < 30
    assert [p for p, _, _, _ in got] == paths  # in order, none lost
    errors = {p: e for p, _, e, _ in got if e}
    assert errors == {killer: batch.WORKER_DIED}


def _half_written_result(chunk, invert):
    """A worker killed while it writes its result: half a message left in the pipe."""
    if any(p.endswith(_KILLER) for p in chunk) and os.getpid() != _PARENT:
        import gc
        import multiprocessing.queues

        for queue in gc.get_objects():
            if isinstance(queue, multiprocessing.queues.SimpleQueue):
                fd = queue._writer.fileno()
                os.write(fd, struct.pack("!i", 18_000) + b"x" * 100)  # 100 of 18,000 bytes
        os.kill(os.getpid(), signal.SIGKILL)
    return _CONVERT(chunk, invert)


def test_a_worker_killed_mid_write_does_not_hang(tmp_path, monkeypatch):
    """CPython's executor would wait for the rest of that message for ever."""
    paths = _digits(tmp_path, 20)
    killer = str(tmp_path / _KILLER)
    render_digit(3).save(killer)
    paths.insert(5, killer)
    monkeypatch.setattr(batch, "convert_chunk", _half_written_result)
    monkeypatch.setattr("digitcli.parallel._can_fork", lambda: True)
    monkeypatch.setattr("digitcli.parallel._STUCK_SECONDS", 0.5)
    started = time.monotonic()
    chunks = batch.iter_converted(paths, jobs=2, chunk_size=4)
    got = [row for chunk in chunks for row in zip(*chunk, strict=True)]
    assert time.monotonic() - started < 30
    assert [p for p, _, _, _ in got] == paths
    assert {p: e for p, _, e, _ in got if e} == {killer: batch.WORKER_DIED}


def test_fifo_socket_and_device_are_never_read(tmp_path, runner, csv_rows):
    fifo = tmp_path / "in" / "pipe.png"
    fifo.parent.mkdir()
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    result = runner.invoke(cli, ["classify", str(tmp_path / "in"), "/dev/null", str(fifo)])
    assert result.exit_code == 1, result.output
    rows = csv_rows(result.stdout)
    assert [r["error"] for r in rows] == ["not a regular file"] * 3
    with pytest.raises(ImageError, match="not a regular file"):
        decode.open_image("/dev/zero")


def test_no_external_program_is_ever_run(tmp_path, runner, csv_rows, monkeypatch):
    """EPS makes Pillow run Ghostscript from $PATH: only in-process raster formats open."""
    marker = tmp_path / "gs-ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    for name in ("digit.eps", "digit.png", "digit.jpg"):
        (tmp_path / name).write_bytes(eps)
    icon = tmp_path / "icon.ico"
    render_digit(3).save(icon)  # an ICO holds images of its own: not opened either
    names = [str(tmp_path / n) for n in ("digit.eps", "digit.png", "digit.jpg", "icon.ico")]
    result = runner.invoke(cli, ["classify", *names])
    assert result.exit_code == 1
    assert [r["error"] for r in csv_rows(result.stdout)] == ["cannot identify image file"] * 4
    assert not marker.exists()


def _png_with_chunk(path: Path, kind: bytes, length: int) -> None:
    """A 8x8 PNG with a chunk declaring `length` bytes before its image data (sparse)."""
    raw = b"".join(b"\0" + b"\xff" * 8 for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
    tail = chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        if length <= 2**20:
            f.write(head + chunk(kind, b"\0" * length) + tail)
            return
        f.write(head + struct.pack(">I", length) + kind)
        f.seek(length + 4, os.SEEK_CUR)  # a hole: no disk, but 2 GiB for a reader
        f.write(tail)


@pytest.mark.parametrize("kind", [b"tEXt", b"prVt", b"iCCP"])
def test_huge_png_chunk_is_refused_before_it_is_read(tmp_path, kind):
    path = tmp_path / "sparse.png"
    _png_with_chunk(path, kind, 2**31 - 1)
    started = time.monotonic()
    with pytest.raises(ImageError, match=r"too large: PNG chunks of 21474836\d\d bytes"):
        _features(path)
    assert time.monotonic() - started < 2  # refused from the headers, not read
    _png_with_chunk(path, kind, 1000)  # a small one is fine
    with pytest.raises(ImageError, match="no digit found"):
        _features(path)


def test_small_png_declaring_a_huge_chunk_is_an_error_row(tmp_path):
    """A small file is read whole, so a chunk can claim 2 GB but hold no more than the file."""
    _png_with_chunk(tmp_path / "big.png", b"tEXt", 2**31 - 1)
    with open(tmp_path / "big.png", "rb") as f:
        small = f.read(200)  # the same headers, cut short: 200 bytes on disk
    (tmp_path / "small.png").write_bytes(small)
    started = time.monotonic()
    with pytest.raises(ImageError, match="truncated file|cannot"):
        _features(tmp_path / "small.png")
    assert time.monotonic() - started < 2


def test_huge_gif_frame_is_refused(tmp_path):
    """A GIF whose first frame is far larger than its 10x10 screen."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 30000, 30000, 0) + b"\x02\x02\x44\x01\x00;"
    path = tmp_path / "huge.gif"
    path.write_bytes(screen + frame)
    with pytest.raises(ImageError, match="too large: 900000000 pixels"):
        _features(path)


def test_path_lists_are_read_in_bounded_pieces(tmp_path):
    with open("/dev/zero", encoding="utf-8") as zero:
        started = time.monotonic()
        with pytest.raises(DataError, match="longer than 16384 characters"):
            list(batch.read_path_list(zero))
        assert time.monotonic() - started < 5
    listing = tmp_path / "list.txt"
    listing.write_text("a.png\r\n\nb.png\n" + "x" * 100_000 + "\nc.png\n", encoding="utf-8")
    with open(listing, encoding="utf-8") as stream:
        got = []
        with pytest.raises(DataError, match="list.txt: entry 4 is longer"):
            got.extend(batch.read_path_list(stream))
    assert got == ["a.png", "b.png"]
    listing.write_bytes(b"a\nb.png\0c\0d.png\0")
    with open(listing, encoding="utf-8") as stream:
        assert list(batch.read_path_list(stream, sep="\0")) == ["a\nb.png", "c", "d.png"]
    listing.write_bytes(b"a\0\0b")  # find -print0 never writes two NULs in a row
    with open(listing, encoding="utf-8") as stream, pytest.raises(DataError, match="empty"):
        list(batch.read_path_list(stream, sep="\0"))


def test_files_from_dev_zero_is_one_line(runner):
    result = runner.invoke(cli, ["classify", "--files-from", "/dev/zero"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: /dev/zero: entry 1 is")
    assert "Traceback" not in result.output


def test_files_from_null_separated(runner, tmp_path, csv_rows):
    paths = _digits(tmp_path / "d", 2)
    odd = tmp_path / "d" / "new\nline.png"
    os.rename(paths[1], odd)
    listing = tmp_path / "list"
    listing.write_bytes(b"\0".join(os.fsencode(p) for p in (paths[0], str(odd))) + b"\0")
    result = runner.invoke(cli, ["classify", "--files-from", str(listing), "-0"])
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in csv_rows(result.stdout)] == [paths[0], str(odd)]
    assert runner.invoke(cli, ["classify", paths[0], "-0"]).exit_code == 2


def test_eval_data_with_a_huge_field_is_one_line(runner, tmp_path):
    data = tmp_path / "big.csv"
    data.write_text("1," * 64 + "2" * 200_000 + "\n", encoding="utf-8")
    result = runner.invoke(cli, ["eval", "--data", str(data)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "_csv.Error" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_output_that_is_an_input_is_refused_before_writing(runner, tmp_path):
    [image] = _digits(tmp_path / "in", 1)
    before = Path(image).read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(image)
    for out in (image, str(link), str(tmp_path / "in" / "new.png")):
        result = runner.invoke(cli, ["classify", str(tmp_path / "in"), image, "-o", out])
        assert result.exit_code == 2, result.output
        assert "would overwrite the input" in result.stderr or "is an image" in result.stderr
    assert Path(image).read_bytes() == before
    assert not (tmp_path / "in" / "new.png").exists()


def test_a_second_run_on_a_locked_output_fails_and_leaves_it_whole(runner, tmp_path):
    [image] = _digits(tmp_path / "in", 1)
    out = tmp_path / "out.csv"
    out.write_text("rows of another run\n", encoding="utf-8")
    with open(out, "a", encoding="utf-8") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # the first run, still writing
        result = runner.invoke(cli, ["classify", image, "-o", str(out)])
    assert result.exit_code == 1
    assert "being written by another digitcli run" in result.stderr
    assert out.read_text(encoding="utf-8") == "rows of another run\n"


def test_show_save_never_writes_through_a_planted_link(runner, tmp_path):
    images = _digits(tmp_path / "a", 1) + _digits(tmp_path / "b", 1)  # same name: 0000.png
    save = tmp_path / "debug"
    save.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    (save / "0000_32x32.png").symlink_to(victim)
    result = runner.invoke(cli, ["show", *images, "--save", str(save)])
    assert result.exit_code == 0, result.output
    assert victim.read_text(encoding="utf-8") == "keep me"
    written = sorted(p.name for p in save.iterdir() if not p.is_symlink())
    assert written == ["0000-2_32x32.png", "0000-2_8x8.png", "0000-3_32x32.png", "0000-3_8x8.png"]


def test_show_takes_folders_and_globs(runner, tmp_path):
    _digits(tmp_path / "s", 3)
    result = runner.invoke(cli, ["show", str(tmp_path / "s"), str(tmp_path / "s" / "000[12].png")])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("0001.png") == 2 and result.stdout.count("0000.png") == 1


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "utf-8"}, {"LC_ALL": "C.UTF-8"}])
def test_names_that_are_not_utf8_keep_their_bytes_on_stdout(tmp_path, env):
    odd = os.fsencode(str(tmp_path)) + b"/odd\xff.png"
    render_digit(2).save(os.fsdecode(odd))
    good = _digits(tmp_path / "z", 1)[0]  # a row after the odd one must not be lost
    run = [sys.executable, "-m", "digitcli", "classify", os.fsdecode(odd), good]
    kw = {"capture_output": True, "env": {**os.environ, **env}, "check": False}
    proc = subprocess.run(run, **kw)
    assert proc.returncode == 0, proc.stderr
    assert odd in proc.stdout and os.fsencode(good) in proc.stdout
    proc = subprocess.run([*run, "--format", "JSONL"], **kw)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.decode("utf-8").splitlines()  # plain UTF-8 JSON lines
    assert os.fsencode(json.loads(first)["path"]) == odd
    assert json.loads(second)["path"] == good


def test_thousand_nested_folders(tmp_path, runner, csv_rows):
    deep = tmp_path
    for _ in range(1000):  # one at a time: makedirs itself would recurse too deep
        deep = deep / "d"
        deep.mkdir()
    render_digit(4).save(deep / "x.png")
    render_digit(5).save(tmp_path / "y.png")
    try:
        result = runner.invoke(cli, ["classify", str(tmp_path)])
    finally:  # pytest's clean-up of tmp_path would recurse too deep too
        (deep / "x.png").rename(tmp_path / "x.png")
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.stdout)
    nested = str(tmp_path / "/".join(["d"] * 1000) / "x.png")
    assert [r["path"] for r in rows] == [nested, str(tmp_path / "y.png")]


def test_unreadable_folder_named_directly_is_an_error_row(tmp_path, unprivileged):
    """As root, mode 000 stops nothing: the run drops the capabilities that override it."""
    locked = tmp_path / "locked"
    _digits(locked, 1)
    locked.chmod(0)
    args = unprivileged([sys.executable, "-m", "digitcli", "classify", str(locked), "-q"])
    try:
        proc = subprocess.run(args, capture_output=True, check=False)
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode())))
    assert [(r["path"], r["error"]) for r in rows] == [(str(locked), "permission denied")]


def test_closed_stdout_ends_quietly(tmp_path):
    """`digitcli classify DIR | head -3`: exit 0, no summary, no traceback."""
    _digits(tmp_path / "many", 600)
    # A pipe of one page: the rows (about 50 KB) cannot all be written before the reader
    # goes, however fast the run (a default 64 KiB pipe would take them all).
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    with os.fdopen(write_end, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digitcli", "classify", str(tmp_path / "many"), "-j", "2"],
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    reader = os.fdopen(read_end, "rb", buffering=0)
    for _ in range(3):
        while reader.read(1) not in (b"\n", b""):
            pass
    reader.close()
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert err == b""


def test_model_error_names_the_environment_variable(runner, tmp_path, monkeypatch):
    [image] = _digits(tmp_path, 1)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    monkeypatch.setenv("DIGITCLI_MODEL", str(bad))
    result = runner.invoke(cli, ["classify", image])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("(from $DIGITCLI_MODEL)")
    explicit = runner.invoke(cli, ["classify", image, "--model", str(bad)])
    assert "DIGITCLI_MODEL" not in explicit.stderr


def test_output_name_and_format_options(runner, tmp_path):
    [image] = _digits(tmp_path, 1)
    out = tmp_path / "rows.jsonl"
    assert runner.invoke(cli, ["classify", image, "-o", str(out)]).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))["digit"] == 0
    upper = runner.invoke(cli, ["classify", image, "--format", "CSV"])
    assert upper.exit_code == 0 and upper.stdout.startswith("path,digit")
    for jobs in ("-1", "0", "1", "2"):
        assert runner.invoke(cli, ["classify", image, "-j", jobs]).exit_code == 0
    assert runner.invoke(cli, ["classify", image, "-j", "-2"]).exit_code == 2


def test_nothing_to_do_is_said(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["classify", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert f"no images found in {tmp_path / 'empty'}" in result.stderr
    missing = runner.invoke(cli, ["classify", str(tmp_path / "scns")])
    assert missing.exit_code == 1
    assert f"not found: {tmp_path / 'scns'}" in missing.stderr


def test_truncated_file_has_one_wording(tmp_path):
    image = tmp_path / "t.png"
    render_digit(3, size=(200, 200)).save(image)
    data = image.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, 60):
        image.write_bytes(data[:cut])
        with pytest.raises(ImageError) as info:
            _features(image)
        assert str(info.value) in ("truncated file", "cannot identify image file")
    assert stat.S_ISREG(os.stat(image).st_mode)


def test_progress_bar_is_cleared_before_the_summary(tmp_path):
    """On a terminal the bar is drawn on stderr, and gone when the summary is printed."""
    import pty

    _digits(tmp_path / "many", 300)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitcli", "classify", str(tmp_path / "many"), "-o", "out.csv"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            piece = os.read(leader, 65536)
        except OSError:  # the other side closed
            break
        if not piece:
            break
        seen += piece
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    assert b"classifying" in seen  # the bar was drawn
    before, _, after = seen.partition(b"300 classified, 0 failed")
    assert after  # the summary
    last_line = before.rsplit(b"\n", 1)[-1]
    # Nothing of the bar is left on the summary's line: it starts clean (erased) or fresh.
    assert last_line in (b"", b"\r") or last_line.endswith(b"\x1b[2K"), last_line


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "P", "LA", "1", "I;16"])
def test_large_images_are_reduced_a_strip_at_a_time(mode):
    """Above STRIP_PIXELS no full-size copy is made, and the result is the plain reduce."""
    big = render_digit(6, size=(300, 300)).resize((3100, 2900)).convert(mode)
    assert big.width * big.height > decode.STRIP_PIXELS
    factor = max(big.size) // decode.WORK_SIZE
    whole = big.convert({"P": "RGBA", "1": "L", "I;16": "I"}.get(mode, mode)).reduce(factor)
    shrunk = decode._shrunk(big, decode.WORK_SIZE)
    assert shrunk.size == whole.size
    assert shrunk.mode == whole.mode and shrunk.tobytes() == whole.tobytes()


def test_a_large_webp_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big.webp"
    render_digit(2, size=(100, 100)).resize((4100, 4000)).save(path, quality=10)
    with pytest.raises(ImageError, match="too large: 16400000 pixels"):
        _features(path)


def test_output_never_overwrites_an_image_however_it_is_named(runner, tmp_path):
    """Patterns, --files-from and hard links lead to inputs too: -o never truncates an image."""
    [image] = _digits(tmp_path / "e", 1)
    before = Path(image).read_bytes()
    hard = tmp_path / "hard.csv"
    os.link(image, hard)
    listing = tmp_path / "list.txt"
    listing.write_text(image + "\n", encoding="utf-8")
    for args in (
        [str(tmp_path / "e" / "*.png"), "-o", image],
        [str(tmp_path / "**" / "*.png"), "-o", image],
        ["--files-from", str(listing), "-o", image],
        [image, "-o", str(hard)],  # an image under another name
    ):
        result = runner.invoke(cli, ["classify", *args])
        assert result.exit_code == 2, (args, result.output)
        assert Path(image).read_bytes() == before
    sheet = tmp_path / "e" / "sheet.png"
    result = runner.invoke(cli, ["eval", "--images", str(tmp_path), "--errors", str(sheet)])
    assert result.exit_code == 2 and "inside the --images folder" in result.stderr


def test_glob_through_links_to_parents_and_deep_trees(runner, tmp_path, csv_rows):
    [image] = _digits(tmp_path / "w" / "s", 1)
    for name in ("l1", "l2"):  # ** through two links back up grew without end
        (tmp_path / "w" / "s" / name).symlink_to("..")
    deep = tmp_path / "deep"
    deep.mkdir()
    for _ in range(1100):
        deep = deep / "d"
        deep.mkdir()
    render_digit(1).save(deep / "x.png")
    try:
        started = time.monotonic()
        result = runner.invoke(
            cli, ["classify", str(tmp_path / "w" / "**" / "*.png"), str(tmp_path / "**" / "x.png")]
        )
        assert time.monotonic() - started < 30
    finally:
        (deep / "x.png").unlink()
        while deep != tmp_path / "deep":
            deep.rmdir()
            deep = deep.parent
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.stdout)
    assert [r["path"] for r in rows][0] == image and len(rows) == 2


def test_odd_entries_and_names(runner, tmp_path, csv_rows):
    [image] = _digits(tmp_path, 1)
    listing = tmp_path / "list"
    listing.write_bytes(b"x\0y/*.png\n" + os.fsencode(image) + b"\n")
    result = runner.invoke(cli, ["classify", "--files-from", str(listing)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [r["path"] for r in csv_rows(result.stdout)] == ["x\0y/*.png", image]
    with_cr = tmp_path / "a\rb.png"
    os.rename(image, with_cr)
    result = runner.invoke(cli, ["classify", str(with_cr)])
    assert [r["path"] for r in csv_rows(result.stdout)] == [str(with_cr)]
    zero = runner.invoke(cli, ["classify", "--files-from", "/dev/zero", "-0"])
    assert zero.exit_code == 1 and "entry 1 is empty" in zero.stderr
    many = runner.invoke(cli, ["classify", str(with_cr), "-j", "10000"])
    assert many.exit_code == 0  # capped at the cores


def test_a_socket_and_a_tall_image_are_refused(tmp_path):
    import socket

    sock = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        with pytest.raises(ImageError, match="not a regular file"):
            decode.open_image(sock)
    tall = tmp_path / "tall.png"
    from PIL import Image

    Image.new("L", (1, 70_000), 255).save(tall)
    with pytest.raises(ImageError, match="too large: 1x70000 pixels"):
        decode.open_image(tall)
