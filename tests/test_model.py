from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from digitcli import model as model_io
from digitcli.errors import ModelError
from digitcli.training import make_model


def _tiny_model(seed: int = 0, hidden: int = 8, meta: dict | None = None) -> model_io.Model:
    rng = np.random.default_rng(seed)
    layers = (
        (rng.normal(size=(64, hidden)), rng.normal(size=hidden)),
        (rng.normal(size=(hidden, 10)), rng.normal(size=10)),
    )
    return make_model([layers], meta or {"note": "tiny"}, np.arange(5))


def test_forward_pass_equals_sklearn_predict_proba(digits):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(40, 20), max_iter=60, random_state=1)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X / 16, y)
    model = make_model([tuple(zip(clf.coefs_, clf.intercepts_, strict=True))], {})
    expected = clf.predict_proba(X / 16)
    got = model.predict_proba(X)
    assert got.shape == (1797, 10)
    # Single precision (model.FORWARD_DTYPE): within a few 1e-7 of scikit-learn's doubles.
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(model.predict(X)[0], clf.predict(X / 16))


def test_shipped_model_gives_valid_probabilities_without_sklearn_objects(shipped_model, digits):
    # The shipped model runs with numpy alone and gives valid probabilities on all of Digits.
    X, _ = digits
    P = shipped_model.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert (P >= 0).all()


def test_ensemble_averages_member_probabilities():
    a, b = _tiny_model(1), _tiny_model(2)
    both = model_io.Model(a.members + b.members, a.x_offset, a.x_scale, {})
    X = np.random.default_rng(0).integers(0, 17, size=(20, 64))
    np.testing.assert_allclose(
        both.predict_proba(X), (a.predict_proba(X) + b.predict_proba(X)) / 2, atol=2e-6
    )


def test_save_load_round_trip(tmp_path):
    m = _tiny_model(meta={"recipe": {"alpha": 0.5}, "test_accuracy": 0.9})
    path = model_io.save(m, tmp_path / "sub" / "m.model")  # any suffix, folder created
    assert path == tmp_path / "sub" / "m.model"
    loaded = model_io.load(path)
    X = np.random.default_rng(3).integers(0, 17, size=(7, 64))
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))
    assert loaded.metadata["format"] == "digitcli-model"
    assert loaded.metadata["format_version"] == 1  # no kernel member
    assert loaded.metadata["layer_sizes"] == [64, 8, 10]
    assert loaded.metadata["recipe"] == {"alpha": 0.5}
    np.testing.assert_array_equal(loaded.test_index, np.arange(5))
    assert not list(tmp_path.glob("sub/.digitcli-*"))  # no temporary file left behind


def _with_kernel(model: model_io.Model, weight: float = 0.3) -> model_io.Model:
    rng = np.random.default_rng(7)
    kernel = model_io.Kernel(
        rng.random((12, 64)), 0.5, rng.normal(size=(12, 10)), rng.normal(size=10), weight
    )
    return replace(model, kernel=kernel)


def test_kernel_member_has_its_share_of_the_average():
    plain = _tiny_model()
    mixed = _with_kernel(plain, 0.3)
    X = np.random.default_rng(4).integers(0, 17, size=(9, 64))
    Z = X / 16
    dist = ((Z[:, None, :] - mixed.kernel.centres[None, :, :]) ** 2).sum(axis=2)
    logits = np.exp(-0.5 * dist) @ mixed.kernel.W + mixed.kernel.b
    kernel_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = 0.7 * plain.predict_proba(X) + 0.3 * kernel_p
    np.testing.assert_allclose(mixed.predict_proba(X), expected, atol=2e-6)


def test_kernel_member_round_trip_is_format_2(tmp_path):
    m = _with_kernel(_tiny_model())
    loaded = model_io.load(model_io.save(m, tmp_path / "k.npz"))
    X = np.random.default_rng(5).integers(0, 17, size=(6, 64))
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))
    assert loaded.metadata["format_version"] == 2 == model_io.FORMAT_VERSION
    assert loaded.metadata["kernel"] == {"centres": 12, "weight": 0.3}
    plain = model_io.load(model_io.save(_tiny_model(), tmp_path / "p.npz"))
    assert plain.kernel is None and plain.metadata["format_version"] == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: a.update(kernel_weight=np.array(1.0)), "kernel_weight"),
        (lambda a: a.update(kernel_gamma=np.array(-1.0)), "kernel_gamma"),
        (lambda a: a.update(kernel_W=np.zeros((11, 10))), "kernel_W"),
        (lambda a: a.update(kernel_centres=np.zeros((12, 63))), "kernel_centres"),
        (lambda a: a.pop("kernel_b"), "missing array kernel_b"),
        (lambda a: a.pop("kernel_centres"), "missing array kernel_centres"),
        (lambda a: [a.pop(k) for k in list(a) if k.startswith("kernel_")], "missing array kernel"),
        (lambda a: a.update(kernel_centres=np.full((12, 64), 1e300)), "kernel_centres holds 1e"),
        (lambda a: a.update(kernel_centres=np.zeros((20_001, 64))), "20001 centres"),
    ],
)
def test_inconsistent_kernel_member(tmp_path, change, match):
    path = model_io.save(_with_kernel(_tiny_model()), tmp_path / "k.npz")
    _rewrite(path, change)
    with pytest.raises(ModelError, match=match):
        model_io.load(path)


def test_shipped_model_metadata(shipped_model):
    meta = shipped_model.metadata
    for key in ("versions", "created", "recipe", "seed", "split", "cv", "test_accuracy"):
        assert key in meta, key
    assert meta["split"]["n_test"] == len(shipped_model.test_index) == 360
    assert meta["features"].startswith("uci-optdigits-8x8")


def test_model_file_has_no_pickle(tmp_path):
    path = model_io.save(_tiny_model(), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object


class _Boom:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _write_bad(kind: str, path: Path, marker: Path) -> None:
    good = io.BytesIO()
    np.savez(good, x=np.arange(3))
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a model\n")
    elif kind == "png":
        from PIL import Image

        Image.new("L", (4, 4)).save(path, format="PNG")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(_Boom(str(marker))))
    elif kind == "npz-object-array":
        np.savez(path, metadata=np.array([_Boom(str(marker))], dtype=object))
    elif kind == "npy":
        with path.open("wb") as fh:
            np.save(fh, np.zeros(3))
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "not-a-model-npz":
        path.write_bytes(good.getvalue())
    elif kind == "truncated":
        model_io.save(_tiny_model(), path)
        path.write_bytes(path.read_bytes()[:700])
    elif kind == "corrupt":
        model_io.save(_tiny_model(), path)
        data = bytearray(path.read_bytes())
        for i in range(200, 600):
            data[i] ^= 0x5A
        path.write_bytes(bytes(data))
    elif kind == "zip-magic-then-zeros":
        path.write_bytes(b"PK" + b"\0" * 100)


BAD_KINDS = [
    "empty",
    "text",
    "png",
    "pickle",
    "npz-object-array",
    "npy",
    "random",
    "not-a-model-npz",
    "truncated",
    "corrupt",
    "zip-magic-then-zeros",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_model_files_raise_one_line_model_error(tmp_path, kind):
    path = tmp_path / "model.npz"
    marker = tmp_path / "PWNED"
    _write_bad(kind, path, marker)
    with pytest.raises(ModelError) as info:
        model_io.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert not marker.exists(), "loading the file ran code"


def test_missing_and_folder_model(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        model_io.load(tmp_path / "nope.npz")
    with pytest.raises(ModelError, match="folder"):
        model_io.load(tmp_path)


def _rewrite(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)


def _set_meta(arrays, **changes):
    meta = json.loads(arrays["metadata"].tobytes())
    meta.update(changes)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: _set_meta(a, format_version=model_io.FORMAT_VERSION + 1), "newer"),
        (lambda a: _set_meta(a, format="something-else"), "format"),
        (lambda a: a.update(m0_W1=np.zeros((8, 7)), m0_b1=np.zeros(7)), "7 outputs"),
        (lambda a: a.update(m0_b0=np.full(8, np.nan)), "non-finite"),
        (lambda a: a.update(x_scale=np.zeros(64)), "x_scale holds 0, outside"),
        (lambda a: a.pop("m0_W0"), "no network weights"),
        (lambda a: a.update(metadata=np.frombuffer(b"{not json", dtype=np.uint8)), "JSON"),
    ],
)
def test_inconsistent_model_files(tmp_path, change, match):
    path = model_io.save(_tiny_model(), tmp_path / "m.npz")
    _rewrite(path, change)
    with pytest.raises(ModelError, match=match):
        model_io.load(path)


def test_zip_bomb_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "MAX_UNPACKED_BYTES", 10_000)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.npy", b"\0" * 50_000)
    with pytest.raises(ModelError, match="unpacks to too much"):
        model_io.load(path)


def test_resolve_model_path_prefers_option_then_env(monkeypatch, tmp_path):
    monkeypatch.delenv(model_io.ENV_VAR, raising=False)
    assert model_io.resolve_model_path(None) == model_io.default_model_path()
    monkeypatch.setenv(model_io.ENV_VAR, str(tmp_path / "env.npz"))
    assert model_io.resolve_model_path(None) == tmp_path / "env.npz"
    assert model_io.resolve_model_path(tmp_path / "x.npz") == tmp_path / "x.npz"


def test_saved_model_is_readable_by_others(tmp_path):
    path = model_io.save(_tiny_model(), tmp_path / "m.npz")
    assert path.stat().st_mode & 0o044 == 0o044
