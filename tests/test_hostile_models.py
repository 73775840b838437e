"""Hostile model files: each gives one short line of error, never a traceback or huge memory.

Every file is built here, in the test's temporary folder. A file whose arrays would take
gigabytes declares them in its ``.npy`` headers only (or holds compressible zeros), and must be
refused from the declared sizes, before anything is allocated.
"""

from __future__ import annotations

import csv
import io
import json
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.lib import format as npy

from digitcli import model as model_io
from digitcli.cli import cli
from digitcli.errors import ModelError
from digitcli.synth import render_digit

GIB = 2**30
#: A message is one line of at most this many characters (besides the model's path).
MAX_MESSAGE_CHARS = 200

Arrays = dict[str, np.ndarray]
Members = dict[str, bytes] | list[tuple[str, bytes]]


def _model(**changes: object) -> model_io.Model:
    """A small valid model with a kernel member; `changes` replace its fields."""
    rng = np.random.default_rng(0)
    layers = (
        (rng.normal(size=(64, 8)), rng.normal(size=8)),
        (rng.normal(size=(8, 10)), rng.normal(size=10)),
    )
    k = model_io.Kernel(rng.random((12, 64)), 0.5, rng.normal(size=(12, 10)), np.zeros(10), 0.2)
    fields = dict(
        members=(layers,),
        x_offset=np.zeros(64),
        x_scale=np.full(64, 16.0),
        metadata={"cv": {"folds": 10, "mean": 0.9}, "test_accuracy": 0.9},
        test_index=np.arange(5),
        kernel=k,
    )
    fields.update(changes)
    return model_io.Model(**fields)


def _good_arrays(tmp_path: Path) -> Arrays:
    path = model_io.save(_model(), tmp_path / "good.npz")
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _npz(path: Path, arrays: Arrays) -> None:
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)


def _zip(path: Path, members: Members, compression: int = zipfile.ZIP_DEFLATED) -> None:
    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of duplicate names: they are the test
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in items:
                zf.writestr(name, data)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _header(shape: tuple[int, ...], descr: object = "<f8") -> bytes:
    """An ``.npy`` header (and no data) declaring `shape` and `descr`."""
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _raw_header(text: str) -> bytes:
    """A version 1.0 ``.npy`` header holding `text` (and no data)."""
    data = text.encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(data).to_bytes(2, "little") + data


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _members(arrays: Arrays) -> dict[str, bytes]:
    return {f"{name}.npy": _npy_bytes(a) for name, a in arrays.items()}


def _meta_text(arrays: Arrays, text: str) -> None:
    arrays["metadata"] = np.frombuffer(text.encode(), dtype=np.uint8)


def _meta(arrays: Arrays, **changes: object) -> None:
    meta = json.loads(arrays["metadata"].tobytes())
    meta.update(changes)
    _meta_text(arrays, json.dumps(meta))


def _nested(depth: int) -> object:
    value: object = 0.5
    for _ in range(depth):
        value = [value]
    return value


# Each builder writes a hostile file at `path` (the good model's arrays are at hand).
Builder = Callable[[Path, Arrays], None]


def _declared(name: str, shape: tuple[int, ...], descr: object = "<f8") -> Builder:
    """Replace array `name` by a bare header declaring `shape` (the file stays tiny)."""

    def build(path: Path, arrays: Arrays) -> None:
        members = _members(arrays)
        members[f"{name}.npy"] = _header(shape, descr)
        _zip(path, members)

    return build


def _changed(change: Callable[[Arrays], object]) -> Builder:
    def build(path: Path, arrays: Arrays) -> None:
        change(arrays)
        _npz(path, arrays)

    return build


def _raw(members: Callable[[Arrays], Members], compression: int = zipfile.ZIP_DEFLATED) -> Builder:
    def build(path: Path, arrays: Arrays) -> None:
        _zip(path, members(arrays), compression)

    return build


def _replaced(name: str, data: bytes) -> Callable[[Arrays], Members]:
    return lambda arrays: {**_members(arrays), f"{name}.npy": data}


def _short_data(arrays: Arrays) -> dict[str, bytes]:
    members = _members(arrays)
    members["x_scale.npy"] = members["x_scale.npy"][:-8]
    return members


HOSTILE: dict[str, Builder] = {
    # arrays declared far too large in their headers
    "30-gib-weights": _declared("m0_W0", (64, 30 * GIB // 64 // 8)),
    "30-gib-metadata": _declared("metadata", (30 * GIB,), "|u1"),
    "exabyte-shape": _declared("x_scale", (2**62, 2**62)),
    "negative-shape": _declared("x_scale", (-1, 64)),
    # not plain numbers
    "object-dtype-header": _declared("x_scale", (64,), "|O"),
    "structured-dtype": _declared("x_scale", (64,), [("a", "<f8")]),
    "string-dtype": _declared("x_scale", (64,), "<U8"),
    "complex-dtype": _declared("x_scale", (64,), "<c16"),
    "pickled-object-array": _raw(_replaced("x_scale", _pickled_npy())),
    # members that are not npy at all
    "garbage-members": _raw(lambda a: {f"{k}.npy": b"\x93NUMPY garbage" * 9 for k in a}),
    "random-bytes-member": _raw(_replaced("m0_W0", np.random.default_rng(1).bytes(3000))),
    "empty-member": _raw(_replaced("m0_W0", b"")),
    "member-not-npy": _raw(lambda a: {**_members(a), "README.txt": b"hello"}),
    "duplicate-member": _raw(
        lambda a: [*_members(a).items(), ("x_scale.npy", _npy_bytes(np.ones(64)))]
    ),
    "npy-version-3": _raw(_replaced("x_scale", b"\x93NUMPY\x03\x00" + _header((64,))[8:])),
    "npy-header-length-4-gib": _raw(_replaced("x_scale", b"\x93NUMPY\x02\x00\xff\xff\xff\xff")),
    "npy-header-20000-chars": _raw(_replaced("x_scale", _raw_header(" " * 20_000))),
    "npy-header-not-a-dict": _raw(_replaced("x_scale", _raw_header("[1, 2]\n"))),
    "npy-header-code": _raw(_replaced("x_scale", _raw_header("__import__('os').system('x')\n"))),
    "npy-header-deep": _raw(_replaced("x_scale", _raw_header("(" * 3000 + ")" * 3000 + "\n"))),
    "python2-header": _raw(
        _replaced(
            "x_scale",
            _raw_header("{'descr': '<f8', 'fortran_order': False, 'shape': (64L,), }\n")
            + bytes(512),
        )
    ),
    "data-shorter-than-header": _raw(_short_data),
    "bzip2-member": _raw(_members, compression=zipfile.ZIP_BZIP2),
    "too-many-members": _raw(lambda a: {**_members(a), **{f"x{i}.npy": b"" for i in range(1100)}}),
    # metadata
    "metadata-100000-deep": _changed(lambda a: _meta_text(a, "[" * 100_000 + "]" * 100_000)),
    "metadata-deep-inside": _changed(
        lambda a: _meta_text(a, '{"format": "digitcli-model", "x": ' + "[" * 5000 + "]" * 5000)
    ),
    "metadata-2-mib": _changed(lambda a: _meta_text(a, " " * 2**21 + "{}")),
    "metadata-nan": _changed(lambda a: _meta(a, seed=float("nan"))),
    "metadata-1e999": _changed(
        lambda a: _meta_text(a, a["metadata"].tobytes().decode()[:-1] + ', "x": 1e999}')
    ),
    "format-version-true": _changed(lambda a: _meta(a, format_version=True)),
    "cv-string": _changed(lambda a: _meta(a, cv="high")),
    "cv-null": _changed(lambda a: _meta(a, cv=None)),
    "cv-folds-string": _changed(lambda a: _meta(a, cv={"folds": "ten", "mean": 0.9})),
    "cv-folds-bool": _changed(lambda a: _meta(a, cv={"folds": True, "mean": 0.9})),
    "cv-mean-nan": _changed(lambda a: _meta(a, cv={"folds": 10, "mean": float("nan")})),
    "cv-mean-huge-int": _changed(lambda a: _meta(a, cv={"folds": 10, "mean": 10**400})),
    "cv-mean-nested": _changed(lambda a: _meta(a, cv={"folds": 10, "mean": _nested(30)})),
    "cv-nested-too-deep": _changed(lambda a: _meta(a, cv=_nested(40))),
    "cv-networks-string": _changed(
        lambda a: _meta(a, cv={"folds": 10, "mean": 0.9, "networks_per_fold": "8"})
    ),
    "test-accuracy-string": _changed(lambda a: _meta(a, test_accuracy="0.99")),
    "test-accuracy-list": _changed(lambda a: _meta(a, test_accuracy=[1, "x", None])),
    "test-accuracy-above-1": _changed(lambda a: _meta(a, test_accuracy=3.5)),
    "validation-string": _changed(lambda a: _meta(a, validation="sample_images")),
    "validation-garbage-list": _changed(lambda a: _meta(a, validation=[1, "x", [None]])),
    "validation-images-not-str": _changed(
        lambda a: _meta(a, validation=[{"images": ["x"], "n": 3, "accuracy": 0.5}])
    ),
    "validation-negative-n": _changed(
        lambda a: _meta(a, validation=[{"images": "x", "n": -1, "accuracy": 0.5}])
    ),
    "validation-accuracy-missing": _changed(
        lambda a: _meta(a, validation=[{"images": "x", "n": 3}])
    ),
    # numbers that make NaN or inf probabilities
    "x-scale-denormal": _changed(lambda a: a.update(x_scale=np.full(64, 1e-320))),
    "x-scale-negative": _changed(lambda a: a.update(x_scale=np.full(64, -16.0))),
    "x-scale-huge": _changed(lambda a: a.update(x_scale=np.full(64, 1e300))),
    "x-offset-inf": _changed(lambda a: a.update(x_offset=np.full(64, np.inf))),
    "gamma-1e308": _changed(lambda a: a.update(kernel_gamma=np.array(1e308))),
    "gamma-nan": _changed(lambda a: a.update(kernel_gamma=np.array(np.nan))),
    "weights-inf": _changed(lambda a: a["m0_W0"].__setitem__((3, 4), np.inf)),
    "weights-nan": _changed(lambda a: a["m0_W1"].__setitem__((0, 0), np.nan)),
    "weights-1e300": _changed(lambda a: a["m0_W1"].__setitem__((0, 0), 1e300)),
    "kernel-W-1e7": _changed(lambda a: a["kernel_W"].__setitem__((0, 0), 1e7)),
    "kernel-b-inf": _changed(lambda a: a["kernel_b"].__setitem__(0, -np.inf)),
    "float16-inf": _changed(lambda a: a.update(m0_b0=np.full(8, np.inf, dtype=np.float16))),
    # layers and indices
    "layer-5000-wide": _changed(
        lambda a: a.update(
            m0_W0=np.zeros((64, 5000)), m0_b0=np.zeros(5000), m0_W1=np.zeros((5000, 10))
        )
    ),
    "test-index-negative": _changed(lambda a: a.update(test_index=np.array([0, -(2**62)]))),
    "test-index-float": _changed(lambda a: a.update(test_index=np.arange(5.0))),
    "test-index-empty": _changed(lambda a: a.update(test_index=np.arange(0))),
}


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """250 KB of compressed zeros whose 64 x 4,000,000 layer costs 11 GB on 360 inputs."""
    path = tmp_path_factory.mktemp("wide") / "wide.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("m0_W0.npy", "w") as fp:
            shape = (64, 4_000_000)
            fp.write(_header(shape, "|u1"))
            zeros = bytes(2**20)
            for start in range(0, shape[0] * shape[1], len(zeros)):
                fp.write(zeros[: shape[0] * shape[1] - start])
        for name, a in _good_arrays(path.parent).items():
            if name != "m0_W0":
                zf.writestr(f"{name}.npy", _npy_bytes(a))
    assert path.stat().st_size < 300_000
    return path


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.npz"
    HOSTILE[request.param](path, _good_arrays(tmp_path))
    return path


def _assert_refused(path: Path) -> str:
    started = time.perf_counter()
    with pytest.raises(ModelError) as info:
        model_io.load(path)
    assert time.perf_counter() - started < 1.0
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert str(path) in message
    assert len(message.replace(str(path), "")) <= MAX_MESSAGE_CHARS, message
    return message


def test_hostile_model_is_refused_with_one_short_line(hostile):
    _assert_refused(hostile)


def test_wide_layers_are_refused_before_unpacking(wide_model):
    assert "unpacks to too much data" in _assert_refused(wide_model)


def test_declared_30_gib_array_is_refused_from_its_header(tmp_path):
    path = tmp_path / "m.npz"
    HOSTILE["30-gib-weights"](path, _good_arrays(tmp_path))
    assert path.stat().st_size < 100_000
    assert "unpacks to too much data" in _assert_refused(path)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("metadata-100000-deep", "nested deeper than 32"),
        ("metadata-2-mib", "larger than"),
        ("metadata-nan", "finite"),
        ("too-many-members", "more than 1024 arrays"),
        ("member-not-npy", "not a single .npy array"),
        ("object-dtype-header", "not numbers"),
        ("pickled-object-array", "not numbers"),
        ("random-bytes-member", "'m0_W0'"),
        ("npy-header-20000-chars", "Header info length (20000) is large"),
        ("cv-mean-nan", "finite"),
        ("cv-string", "'cv' is malformed"),
        ("test-accuracy-string", "'test_accuracy' is malformed"),
        ("validation-garbage-list", "'validation' is malformed"),
        ("x-scale-denormal", "array x_scale holds 9.99989e-321, outside [1e-06, 1e+06]"),
        ("gamma-1e308", "kernel_gamma holds 1e+308, outside"),
        ("weights-inf", "non-finite"),
        ("layer-5000-wide", "expected (64, 1..4096)"),
        ("test-index-negative", "test_index"),
    ],
)
def test_reasons(tmp_path, name, match):
    path = tmp_path / "m.npz"
    HOSTILE[name](path, _good_arrays(tmp_path))
    assert match in _assert_refused(path)


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "three.png"
    render_digit(3).save(path)
    return path


COMMANDS = ["classify", "read", "show", "eval"]


def _run(command: str, model: Path, tmp_path: Path, *extra: str):
    args = [command, "--model", str(model), *extra]
    if command != "eval":
        args.insert(1, str(_image(tmp_path)))
    return CliRunner().invoke(cli, args)


def _assert_one_line_error(result) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exc_info  # nothing escaped
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_gives_one_line_for_a_hostile_model(hostile, tmp_path, command):
    _assert_one_line_error(_run(command, hostile, tmp_path))


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_refuses_wide_layers(wide_model, tmp_path, command):
    _assert_one_line_error(_run(command, wide_model, tmp_path))


def test_eval_json_with_hostile_metadata(tmp_path):
    path = tmp_path / "m.npz"
    HOSTILE["cv-mean-nested"](path, _good_arrays(tmp_path))
    _assert_one_line_error(_run("eval", path, tmp_path, "--json"))


def test_corrupted_files_give_a_model_error_or_a_model(tmp_path):
    good = model_io.save(_model(), tmp_path / "good.npz").read_bytes()
    structures = [i for i in range(len(good)) if good.startswith(b"PK", i)]  # zip headers
    rng = np.random.default_rng(0)
    path = tmp_path / "m.npz"
    for trial in range(600):
        data = bytearray(good)
        for _ in range(rng.integers(1, 6)):
            if trial % 2:  # within a zip header
                start = structures[rng.integers(len(structures))]
                data[min(start + rng.integers(64), len(data) - 1)] = rng.integers(256)
            else:
                data[rng.integers(len(data))] = rng.integers(256)
        if trial % 5 == 0:
            data = data[: rng.integers(1, len(data))]
        path.write_bytes(bytes(data))
        try:
            model_io.load(path)
        except ModelError as exc:
            assert "\n" not in str(exc)


# predict_proba: NaN or inf is never passed off as a probability


def _overflowing() -> model_io.Model:
    """Past load's checks (built directly): any ink overflows to inf, then NaN."""
    return _model(x_scale=np.full(64, 1e-320))


def test_predict_proba_raises_on_non_finite_rows():
    X = np.zeros((3, 64))
    X[1, 10] = 5
    with pytest.raises(ModelError, match="no valid probability .* for 1 of 3 inputs"):
        _overflowing().predict_proba(X)
    with pytest.raises(ModelError):
        _overflowing().predict(X)


def test_predict_proba_nan_rows_on_request():
    X = np.zeros((3, 64))
    X[1, 10] = 5
    P = _overflowing().predict_proba(X, invalid="nan")
    assert np.isnan(P[1]).all()
    np.testing.assert_allclose(P[[0, 2]].sum(axis=1), 1.0)


def test_huge_gamma_gives_no_probability():
    rng = np.random.default_rng(2)
    kernel = model_io.Kernel(rng.random((12, 64)), 1e308, np.ones((12, 10)), np.zeros(10), 0.5)
    P = _model(kernel=kernel).predict_proba(rng.integers(1, 17, size=(4, 64)), invalid="nan")
    assert np.isnan(P).all()


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_never_writes_a_non_finite_probability(tmp_path, monkeypatch, command):
    monkeypatch.setattr(model_io, "load", lambda path: _overflowing())
    result = _run(command, tmp_path / "any.npz", tmp_path)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if command == "classify":  # an error row, or no row at all (the run stops)
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert all(row["digit"] == "" and row["error"] for row in rows)
    elif command == "read":  # the row says so, as in classify
        (row,) = csv.DictReader(io.StringIO(result.stdout))
        assert row["number"] == "" and row["error"] == "the model gave no valid probabilities"
    else:
        _assert_one_line_error(result)


def test_well_formed_metadata_is_shown(tmp_path):
    meta = {
        "cv": {"folds": 10, "mean": 0.98, "networks_per_fold": 1, "scores": [0.98] * 10},
        "test_accuracy": 1,
        "validation": [{"images": "samples", "n": 50, "accuracy": 0.96, "failed": 0}],
        "recipe": _nested(model_io.MAX_METADATA_DEPTH - 3),
    }
    path = model_io.save(_model(metadata=meta), tmp_path / "m.npz")
    assert model_io.load(path).metadata["validation"][0]["n"] == 50
    result = _run("eval", path, tmp_path)
    assert result.exit_code == 0, result.output
    assert "10-fold CV 0.9800" in result.stdout and "0.9600 on 50 images" in result.stdout


def test_eval_shows_recorded_folder_names_as_text(tmp_path):
    meta = {"validation": [{"images": "scans[/x]", "n": 5, "accuracy": 0.5}]}
    path = model_io.save(_model(metadata=meta), tmp_path / "m.npz")
    result = _run("eval", path, tmp_path)
    assert result.exit_code == 0 and "scans[/x]" in result.stdout
