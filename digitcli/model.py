"""The model file and the numpy forward pass.

A model file is a numpy ``.npz`` archive read with ``allow_pickle=False``: plain float arrays
(weights, biases, input scaling) and one ``uint8`` array holding UTF-8 JSON metadata. Loading
it can never run code, and it does not depend on scikit-learn, so it survives an upgrade.

Arrays in the archive
---------------------
``metadata``            UTF-8 JSON (see :data:`FORMAT_VERSION` and :func:`save`)
``x_offset``, ``x_scale`` (64,) float64: the network sees ``(x - x_offset) / x_scale``
``m{k}_W{i}``, ``m{k}_b{i}`` layer ``i`` of ensemble member ``k`` (ReLU hidden layers,
                        softmax output; members' probabilities are averaged)
``kernel_centres``, ``kernel_gamma``, ``kernel_W``, ``kernel_b``, ``kernel_weight``
                        (optional) the kernel member: softmax(rbf(x) @ W + b), where
                        ``rbf(x)[j] = exp(-gamma * |x - centre_j|**2)`` on the scaled inputs;
                        it has ``kernel_weight`` of the average, the networks the rest
``test_index``          (optional) int64 indices of the held-out Digits test split
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitcli.errors import ModelError

FORMAT = "digitcli-model"
#: Files with a kernel member are version 2 (digitcli before kernels refuses them, instead
#: of running the networks alone); files without one stay version 1.
FORMAT_VERSION = 2
#: At most this many kernel centres (the shipped model has 1,437).
MAX_KERNEL_CENTRES = 20_000
N_FEATURES = 64
N_CLASSES = 10
FEATURES = "uci-optdigits-8x8: 64 on-pixel counts of 4x4 blocks of a 32x32 bitmap, 0..16"
MAX_FILE_BYTES = 64 * 2**20
MAX_UNPACKED_BYTES = 256 * 2**20
ENV_VAR = "DIGITCLI_MODEL"

Layer = tuple[np.ndarray, np.ndarray]
_KERNEL_ROWS = 1024


@dataclass(frozen=True)
class Kernel:
    """A kernel member: multinomial logistic regression on RBF similarities to stored images.

    Parameters
    ----------
    centres : numpy.ndarray
        ``(n, 64)`` images (scaled like the networks' inputs) the similarities are taken to.
    gamma : float
        ``rbf(z)[j] = exp(-gamma * |z - centres[j]|**2)``.
    W, b : numpy.ndarray
        ``(n, 10)`` and ``(10,)``: logits are ``rbf(z) @ W + b``.
    weight : float
        Share of the kernel member's probabilities in the model's average, in (0, 1).
    """

    centres: np.ndarray
    gamma: float
    W: np.ndarray
    b: np.ndarray
    weight: float

    @functools.cached_property
    def _exponents(self) -> np.ndarray:
        return _rbf_exponents(self.centres, self.gamma)

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, 10)`` for scaled inputs `Z` ``(n, 64)``."""
        out = np.empty((len(Z), N_CLASSES))
        for start in range(0, len(Z), _KERNEL_ROWS):  # bounds the (rows, centres) array
            part = slice(start, start + _KERNEL_ROWS)
            out[part] = _softmax(_rbf(Z[part], self._exponents) @ self.W + self.b)
        return out


def _rbf_exponents(centres: np.ndarray, gamma: float) -> np.ndarray:
    # -gamma * |z - c|^2 = [z, 1, |z|^2] @ [2 gamma c; -gamma |c|^2; -gamma]: one matrix product.
    return np.vstack(
        [
            2 * gamma * centres.T,
            -gamma * np.einsum("ij,ij->i", centres, centres),
            np.full(len(centres), -gamma),
        ]
    )


def _rbf(Z: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    n, d = Z.shape
    extended = np.empty((n, d + 2))
    extended[:, :d] = Z
    extended[:, d] = 1.0
    extended[:, d + 1] = np.einsum("ij,ij->i", Z, Z)
    out = extended @ exponents
    return np.exp(out, out=out)


def rbf(Z: np.ndarray, centres: np.ndarray, gamma: float) -> np.ndarray:
    """RBF similarities ``exp(-gamma * |z - c|**2)`` of rows `Z` to rows `centres`.

    Parameters
    ----------
    Z, centres : numpy.ndarray
        ``(n, d)`` and ``(m, d)``.
    gamma : float
        Inverse squared width.

    Returns
    -------
    numpy.ndarray
        ``(n, m)``.
    """
    return _rbf(Z, _rbf_exponents(centres, gamma))


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


@dataclass(frozen=True)
class Model:
    """A trained classifier: MLPs whose softmax outputs are averaged, and an optional kernel member.

    Parameters
    ----------
    members : tuple of tuple of (W, b)
        Per ensemble member, its layers as ``(weights, biases)``; hidden layers use ReLU,
        the last layer softmax.
    x_offset, x_scale : numpy.ndarray
        Input scaling, shape ``(64,)``.
    metadata : dict
        JSON-serialisable facts about the model (recipe, seed, scores, versions).
    test_index : numpy.ndarray or None
        Indices of the Digits samples held out for testing, if known.
    kernel : Kernel or None
        A kernel member with ``kernel.weight`` of the average (the networks share the rest).
    """

    members: tuple[tuple[Layer, ...], ...]
    x_offset: np.ndarray
    x_scale: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    test_index: np.ndarray | None = None
    kernel: Kernel | None = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities for feature rows.

        Parameters
        ----------
        X : numpy.ndarray
            Shape ``(n, 64)``, Digits features (0..16).

        Returns
        -------
        numpy.ndarray
            Shape ``(n, 10)``, rows summing to 1.
        """
        Z = (np.asarray(X, dtype=np.float64).reshape(-1, N_FEATURES) - self.x_offset) / self.x_scale
        total = np.zeros((Z.shape[0], N_CLASSES))
        for layers in self.members:
            h = Z
            for W, b in layers[:-1]:
                h = h @ W
                h += b
                np.maximum(h, 0, out=h)
            W, b = layers[-1]
            logits = h @ W
            logits += b
            total += _softmax(logits)
        total /= len(self.members)
        if self.kernel is not None:
            total *= 1 - self.kernel.weight
            total += self.kernel.weight * self.kernel.predict_proba(Z)
        return total

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Most likely digit and its probability for each feature row.

        Parameters
        ----------
        X : numpy.ndarray
            Shape ``(n, 64)``.

        Returns
        -------
        digits, confidence : numpy.ndarray
            Shapes ``(n,)``: int digits and float probabilities.
        """
        P = self.predict_proba(X)
        digits = P.argmax(axis=1)
        return digits, P[np.arange(len(P)), digits]


def default_model_path() -> Path:
    """Where the shipped default model is.

    Installed, it lives in the package (``digitcli/models/``); in a source checkout or an
    editable install, in the repository's ``models/`` folder.

    Returns
    -------
    pathlib.Path
        Path of ``default.npz`` (which may not exist in a broken install).
    """
    here = Path(__file__).resolve().parent
    installed = here / "models" / "default.npz"
    if installed.is_file():
        return installed
    return here.parent / "models" / "default.npz"


def resolve_model_path(path: str | os.PathLike[str] | None) -> Path:
    """The model to use: `path`, else ``$DIGITCLI_MODEL``, else the shipped default.

    Parameters
    ----------
    path : str or path-like or None
        An explicit model file.

    Returns
    -------
    pathlib.Path
    """
    if path:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else default_model_path()


def save(model: Model, path: str | os.PathLike[str]) -> Path:
    """Write a model file atomically (a half-written file never replaces a good one).

    Parameters
    ----------
    model : Model
        The model to write.
    path : str or path-like
        Destination; written exactly there (no suffix is added).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    meta = dict(model.metadata)
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION if model.kernel is not None else 1,
        features=FEATURES,
        members=len(model.members),
        layer_sizes=[int(model.members[0][0][0].shape[0])]
        + [int(W.shape[1]) for W, _ in model.members[0]],
    )
    meta.pop("kernel", None)
    if model.kernel is not None:
        meta["kernel"] = {"centres": len(model.kernel.centres), "weight": model.kernel.weight}
    arrays: dict[str, np.ndarray] = {
        "metadata": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
        "x_offset": np.asarray(model.x_offset, dtype=np.float64),
        "x_scale": np.asarray(model.x_scale, dtype=np.float64),
    }
    for k, layers in enumerate(model.members):
        for i, (W, b) in enumerate(layers):
            arrays[f"m{k}_W{i}"] = np.asarray(W, dtype=np.float64)
            arrays[f"m{k}_b{i}"] = np.asarray(b, dtype=np.float64)
    if model.kernel is not None:
        k = model.kernel
        arrays["kernel_centres"] = np.asarray(k.centres, dtype=np.float64)
        arrays["kernel_gamma"] = np.asarray(k.gamma, dtype=np.float64)
        arrays["kernel_W"] = np.asarray(k.W, dtype=np.float64)
        arrays["kernel_b"] = np.asarray(k.b, dtype=np.float64)
        arrays["kernel_weight"] = np.asarray(k.weight, dtype=np.float64)
    if model.test_index is not None:
        arrays["test_index"] = np.asarray(model.test_index, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".digitcli-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike[str]) -> Model:
    """Read and check a model file; never executes anything stored in it.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` model file.

    Returns
    -------
    Model

    Raises
    ------
    ModelError
        With a one-line reason if the file is missing, empty, not a model, corrupt,
        truncated, inconsistent or of a newer format.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ModelError(f"model path is a folder, not a file: {path}")
    if size == 0:
        raise ModelError(f"model file is empty: {path}")
    if size > MAX_FILE_BYTES:
        raise ModelError(f"model file is too large ({size} bytes): {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if not data.startswith(b"PK"):
        raise ModelError(f"not a digitcli model file (not an .npz archive): {path}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if sum(info.file_size for info in zf.infolist()) > MAX_UNPACKED_BYTES:
                raise ModelError(f"model file unpacks to too much data: {path}")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ModelError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ModelError(f"model file is corrupt or truncated: {path} ({exc})") from None
    except (ValueError, OSError, KeyError) as exc:
        # allow_pickle=False refuses object arrays with a ValueError: nothing ran.
        raise ModelError(f"not a valid digitcli model file: {path} ({exc})") from None
    return _from_arrays(arrays, path)


def _from_arrays(arrays: dict[str, np.ndarray], path: Path) -> Model:
    def bad(reason: str) -> ModelError:
        return ModelError(f"not a valid digitcli model file: {path} ({reason})")

    raw = arrays.get("metadata")
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise bad("no metadata")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad("metadata does not name the digitcli model format")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise bad("no format version")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"model file {path} has format version {version}, newer than this digitcli "
            f"reads ({FORMAT_VERSION}): upgrade digitcli"
        )

    def floats(name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        a = arrays.get(name)
        if a is None:
            raise bad(f"missing array {name}")
        if a.dtype.kind not in "fiu" or (shape is not None and a.shape != shape):
            raise bad(f"array {name} has shape {a.shape} and type {a.dtype}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise bad(f"array {name} holds non-finite values")
        return a

    x_offset = floats("x_offset", (N_FEATURES,))
    x_scale = floats("x_scale", (N_FEATURES,))
    if (x_scale == 0).any():
        raise bad("x_scale holds zeros")
    members = []
    k = 0
    while f"m{k}_W0" in arrays:
        layers = []
        width = N_FEATURES
        i = 0
        while f"m{k}_W{i}" in arrays:
            W = floats(f"m{k}_W{i}")
            if W.ndim != 2 or W.shape[0] != width:
                raise bad(f"layer m{k}_W{i} has shape {W.shape}, expected ({width}, ...)")
            b = floats(f"m{k}_b{i}", (W.shape[1],))
            layers.append((W, b))
            width = W.shape[1]
            i += 1
        if width != N_CLASSES:
            raise bad(f"member {k} ends with {width} outputs, not {N_CLASSES}")
        members.append(tuple(layers))
        k += 1
    if not members:
        raise bad("no network weights")
    kernel = None
    if version >= 2 or any(name.startswith("kernel_") for name in arrays):
        centres = floats("kernel_centres")
        if centres.ndim != 2 or centres.shape[1] != N_FEATURES or not len(centres):
            raise bad(f"array kernel_centres has shape {centres.shape}")
        if len(centres) > MAX_KERNEL_CENTRES or np.abs(centres).max() > 1e3:
            raise bad(
                f"kernel_centres: {len(centres)} centres, largest value {np.abs(centres).max():g}"
            )
        gamma = float(floats("kernel_gamma", ()))
        weight = float(floats("kernel_weight", ()))
        if gamma <= 0 or not 0 < weight < 1:
            raise bad(f"kernel_gamma {gamma} must be > 0 and kernel_weight {weight} in (0, 1)")
        W = floats("kernel_W", (len(centres), N_CLASSES))
        kernel = Kernel(centres, gamma, W, floats("kernel_b", (N_CLASSES,)), weight)
    test_index = arrays.get("test_index")
    if test_index is not None and (test_index.dtype.kind not in "iu" or test_index.ndim != 1):
        raise bad("test_index is not a list of integers")
    return Model(tuple(members), x_offset, x_scale, meta, test_index, kernel)
