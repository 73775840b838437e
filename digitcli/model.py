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

Loading a hostile file
----------------------
:func:`load` refuses, with a one-line :class:`~digitcli.errors.ModelError`, anything that is
not such an archive, and checks every size before it reads or unpacks the data: the archive's
member count (:data:`MAX_ARRAYS`) and declared sizes, and each array's ``.npy`` header
(plain numbers only, at most :data:`MAX_UNPACKED_BYTES` in all once loaded as float64). The
metadata is capped in size and depth, numbers are checked to be finite and in range, and the
figures ``digitcli eval`` shows (``cv``, ``test_accuracy``, ``validation``) are type-checked.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from numpy.lib import format as npy

from digitcli.errors import ModelError

FORMAT = "digitcli-model"
#: Files with a kernel member are version 2 (digitcli before kernels refuses them, instead
#: of running the networks alone); files without one stay version 1.
FORMAT_VERSION = 2
#: At most this many kernel centres (the shipped model has 1,437).
MAX_KERNEL_CENTRES = 20_000
#: Kernel centres are scaled inputs: at most this large in absolute value.
MAX_CENTRE = 1e3
N_FEATURES = 64
N_CLASSES = 10
FEATURES = "uci-optdigits-8x8: 64 on-pixel counts of 4x4 blocks of a 32x32 bitmap, 0..16"
MAX_FILE_BYTES = 64 * 2**20
#: What a file may cost in memory once loaded, every array element counted as 8 bytes
#: (float64); checked against the sizes the archive and the array headers declare.
MAX_UNPACKED_BYTES = 256 * 2**20
#: At most this many arrays (zip members) in a file (the shipped model has 41).
MAX_ARRAYS = 1024
#: At most this many units in a layer (the shipped model has 256): bounds the forward pass.
MAX_LAYER_WIDTH = 4096
#: Weights, biases and offsets are at most this large in absolute value.
MAX_WEIGHT = 1e6
#: ``x_scale`` and ``kernel_gamma`` lie in ``[MIN_SCALE, MAX_SCALE]`` (positive, normal).
MIN_SCALE = 1e-6
MAX_SCALE = 1e6
#: The JSON metadata is at most this many bytes (the shipped model has about 1 KB) ...
MAX_METADATA_BYTES = 2**20
#: ... and nests arrays and objects at most this deep (the shipped model: 3).
MAX_METADATA_DEPTH = 32
ENV_VAR = "DIGITCLI_MODEL"

Layer = tuple[np.ndarray, np.ndarray]
#: Rows per step of the forward pass: bounds the (rows, width) and (rows, centres) arrays.
_ROWS = 1024


#: The forward pass runs in single precision: twice as fast as double, and its
#: probabilities agree with double precision's (scikit-learn's) to about 1e-7.
FORWARD_DTYPE = np.float32
_LOADED_ITEMSIZE = 8
_MAX_INDEX = 2**31 - 1
_MAX_REASON_CHARS = 120
#: Signature of a zip central directory entry: ``zipfile`` makes an object for each.
_ZIP_ENTRY = b"PK\x01\x02"
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_NPY_HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


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

    @functools.cached_property
    def _single(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exponents and output layer in single precision (:data:`FORWARD_DTYPE`)."""
        return tuple(a.astype(FORWARD_DTYPE) for a in (self._exponents, self.W, self.b))

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, 10)`` for scaled inputs `Z` ``(n, 64)``.

        Computed in :data:`FORWARD_DTYPE`, returned as float64.
        """
        exponents, W, b = self._single
        Z = np.asarray(Z, dtype=FORWARD_DTYPE)
        out = np.empty((len(Z), N_CLASSES))
        for start in range(0, len(Z), _ROWS):  # bounds the (rows, centres) array
            part = slice(start, start + _ROWS)
            out[part] = _softmax(_rbf(Z[part], exponents) @ W + b)
        return out

    def nearest(self, Z: np.ndarray) -> np.ndarray:
        """Squared distance ``(n,)`` from each scaled input row to its nearest centre.

        Computed in :data:`FORWARD_DTYPE` like the probabilities, returned as float64.
        """
        exponents = self._single[0]
        Z = np.asarray(Z, dtype=FORWARD_DTYPE)
        out = np.empty(len(Z))
        for start in range(0, len(Z), _ROWS):  # bounds the (rows, centres) array
            part = Z[start : start + _ROWS]
            extended = np.column_stack(
                [part, np.ones(len(part), dtype=part.dtype), np.einsum("ij,ij->i", part, part)]
            )
            closest = (extended @ exponents).max(axis=1)  # -gamma * distance**2
            out[start : start + len(part)] = np.maximum(-closest / self.gamma, 0.0)
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
    extended = np.empty((n, d + 2), dtype=Z.dtype)
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

    def predict_proba(
        self, X: np.ndarray, *, invalid: Literal["raise", "nan"] = "raise"
    ) -> np.ndarray:
        """Class probabilities for feature rows; never a NaN or inf passed off as one.

        :func:`load` refuses weights that are not finite or out of range, but extreme (yet
        allowed) values can still overflow on some input. Such a row has no valid
        probabilities: it must be reported as an error, never as a prediction.

        Parameters
        ----------
        X : numpy.ndarray
            Shape ``(n, 64)``, Digits features (0..16).
        invalid : {"raise", "nan"}
            For rows whose probabilities are not all finite: ``"raise"`` a
            :class:`~digitcli.errors.ModelError`; ``"nan"``: make the whole row NaN, for the
            caller to turn into an error row (``np.isnan(P).any(axis=1)`` finds them).

        Returns
        -------
        numpy.ndarray
            Shape ``(n, 10)``, rows summing to 1 (or, with ``invalid="nan"``, all NaN).

        Raises
        ------
        ModelError
            With ``invalid="raise"``, if any row's probabilities are not finite.
        """
        X = np.asarray(X, dtype=np.float64).reshape(-1, N_FEATURES)
        out = np.empty((len(X), N_CLASSES))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, len(X), _ROWS):  # bounds the (rows, width) arrays
                part = slice(start, start + _ROWS)
                out[part] = self._proba((X[part] - self.x_offset) / self.x_scale)
        broken = ~np.isfinite(out).all(axis=1)
        if broken.any():
            if invalid == "raise":
                raise ModelError(
                    f"the model gave no valid probability (not finite) for {broken.sum()} "
                    f"of {len(out)} inputs"
                )
            out[broken] = np.nan
        return out

    @functools.cached_property
    def _single(self) -> tuple[tuple[Layer, ...], ...]:
        """The networks' layers in single precision (:data:`FORWARD_DTYPE`)."""
        return tuple(
            tuple((W.astype(FORWARD_DTYPE), b.astype(FORWARD_DTYPE)) for W, b in layers)
            for layers in self.members
        )

    def _proba(self, Z: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, 10)`` for scaled inputs `Z`, not checked."""
        Z = Z.astype(FORWARD_DTYPE)
        total = np.zeros((Z.shape[0], N_CLASSES), dtype=FORWARD_DTYPE)
        for layers in self._single:
            h = Z
            for W, b in layers[:-1]:
                h = h @ W
                h += b
                np.maximum(h, 0, out=h)
            W, b = layers[-1]
            logits = h @ W
            logits += b
            total += _softmax(logits)
        out = total.astype(np.float64)
        out /= len(self.members)
        if self.kernel is not None:
            out *= 1 - self.kernel.weight
            out += self.kernel.weight * self.kernel.predict_proba(Z)
        out /= out.sum(axis=1, keepdims=True)  # rows sum to 1 in double precision
        return out

    def strangeness(self, X: np.ndarray) -> np.ndarray | None:
        """How far each feature row lies from every digit the model was fitted on.

        The squared distance, in the networks' scaled inputs, to the nearest centre of the
        kernel member (each centre is a training image). A fragment of a digit, or two
        digits read as one, lie far from all of them, though a network may still be sure
        of its answer. ``None`` for a model without a kernel member.

        Parameters
        ----------
        X : numpy.ndarray
            Shape ``(n, 64)``, Digits features.

        Returns
        -------
        numpy.ndarray or None
            Shape ``(n,)``, float64, at least 0; not finite where an extreme (yet allowed)
            model overflows, as :meth:`predict_proba` would.
        """
        if self.kernel is None:
            return None
        X = np.asarray(X, dtype=np.float64).reshape(-1, N_FEATURES)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self.kernel.nearest((X - self.x_offset) / self.x_scale)

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

        Raises
        ------
        ModelError
            If the model gives no valid probabilities for a row (see :meth:`predict_proba`).
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
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".digitcli-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # stored: loading skips the inflate (12 ms)
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

    Every size is checked before anything is read or unpacked (see the module docstring),
    so a hostile file costs at most :data:`MAX_FILE_BYTES` plus :data:`MAX_UNPACKED_BYTES`.

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
        truncated, too large, inconsistent, out of range or of a newer format.
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
    if data.count(_ZIP_ENTRY) > MAX_ARRAYS:  # before zipfile makes an object per entry
        raise _invalid(path, f"more than {MAX_ARRAYS} arrays")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns of Python 2 headers: refuse them
            arrays = _read_arrays(data, path)
    except ModelError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ModelError(f"model file is corrupt or truncated: {path} ({_reason(exc)})") from None
    except (ValueError, OSError, NotImplementedError) as exc:
        # NotImplementedError: zipfile meets a zip feature it lacks (e.g. strong encryption)
        raise _invalid(path, _reason(exc)) from None
    return _from_arrays(arrays, path)


def _invalid(path: Path, reason: str) -> ModelError:
    return ModelError(f"not a valid digitcli model file: {path} ({reason})")


def _reason(exc: BaseException) -> str:
    """First line of `exc`'s message, shortened: an error message stays one short line."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    return lines[0][:_MAX_REASON_CHARS]


def _read_arrays(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """The ``.npy`` arrays of an ``.npz`` archive, each size checked before its data is read.

    Parameters
    ----------
    data : bytes
        The archive.
    path : pathlib.Path
        Its path, for messages.

    Returns
    -------
    dict of str to numpy.ndarray
        Read-only arrays of plain integers or floats, by member name without ``.npy``.

    Raises
    ------
    ModelError
        If a member is not a plain ``.npy`` array or the arrays would take too much memory.
    """
    arrays: dict[str, np.ndarray] = {}
    budget = MAX_UNPACKED_BYTES
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = zf.infolist()
        if sum(info.file_size for info in members) > budget:
            raise ModelError(f"model file unpacks to too much data: {path}")
        for info in members:
            name = info.filename.removesuffix(".npy")
            label = repr(name[:40])
            if name == info.filename or name in arrays:
                raise _invalid(path, f"member {info.filename[:40]!r} is not a single .npy array")
            if info.flag_bits & 0x1 or info.compress_type not in _COMPRESSIONS:
                raise _invalid(path, f"array {label} is encrypted or oddly compressed")
            with zf.open(info) as fp:
                try:
                    shape, fortran_order, dtype = _npy_header(fp)
                except Exception as exc:
                    # numpy parses the (<= 10,000 character) header with ast.literal_eval, then
                    # tokenize: hostile text fails in many ways (ValueError, TypeError,
                    # SyntaxError, TokenError, a warning made an error...), all meaning "bad".
                    raise _invalid(path, f"array {label}: {_reason(exc)}") from None
                count = math.prod(shape)
                budget -= count * _LOADED_ITEMSIZE
                if budget < 0:
                    raise ModelError(f"model file unpacks to too much data: {path}")
                nbytes = count * dtype.itemsize
                if fp.tell() + nbytes != info.file_size:
                    raise _invalid(path, f"array {label} does not match its header")
                raw = fp.read(nbytes)  # zipfile checks the CRC as the member ends
            order = "F" if fortran_order else "C"
            arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape, order=order)
    return arrays


def _npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read an ``.npy`` header: shape, Fortran order and type of plain numbers.

    Raises
    ------
    ValueError
        If it is no ``.npy`` header of version 1 or 2, or declares a negative size or a type
        other than plain integers or floats of at most 8 bytes (no objects: no pickles).
    """
    version = npy.read_magic(fp)
    if version not in _NPY_HEADER_READERS:
        raise ValueError(f".npy version {version}")
    shape, fortran_order, dtype = _NPY_HEADER_READERS[version](fp)
    if dtype.kind not in "fiu" or dtype.itemsize > _LOADED_ITEMSIZE:
        raise ValueError(f"type {dtype}, not numbers")
    if min(shape, default=0) < 0:
        raise ValueError(f"shape {shape}")
    return shape, fortran_order, dtype


def _from_arrays(arrays: dict[str, np.ndarray], path: Path) -> Model:
    def bad(reason: str) -> ModelError:
        return _invalid(path, reason)

    meta = _read_metadata(arrays.pop("metadata", None), path)

    def floats(
        name: str,
        shape: tuple[int, ...] | None = None,
        low: float = -MAX_WEIGHT,
        high: float = MAX_WEIGHT,
    ) -> np.ndarray:
        a = arrays.pop(name, None)  # taken: the file's copy is freed as its float64 one is made
        if a is None:
            raise bad(f"missing array {name}")
        if shape is not None and a.shape != shape:
            raise bad(f"array {name} has shape {a.shape} and type {a.dtype}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise bad(f"array {name} holds non-finite values")
        outside = a[(a < low) | (a > high)]
        if outside.size:
            raise bad(f"array {name} holds {outside[0]:g}, outside [{low:g}, {high:g}]")
        return a

    x_offset = floats("x_offset", (N_FEATURES,))
    x_scale = floats("x_scale", (N_FEATURES,), MIN_SCALE, MAX_SCALE)
    members = []
    k = 0
    while f"m{k}_W0" in arrays:
        layers = []
        width = N_FEATURES
        i = 0
        while f"m{k}_W{i}" in arrays:
            W = floats(f"m{k}_W{i}")
            if W.ndim != 2 or W.shape[0] != width or not 1 <= W.shape[1] <= MAX_LAYER_WIDTH:
                raise bad(
                    f"layer m{k}_W{i} has shape {W.shape}, expected ({width}, 1..{MAX_LAYER_WIDTH})"
                )
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
    if meta["format_version"] >= 2 or any(name.startswith("kernel_") for name in arrays):
        centres = floats("kernel_centres", None, -MAX_CENTRE, MAX_CENTRE)
        if centres.ndim != 2 or centres.shape[1] != N_FEATURES or not len(centres):
            raise bad(f"array kernel_centres has shape {centres.shape}")
        if len(centres) > MAX_KERNEL_CENTRES:
            raise bad(f"kernel_centres: {len(centres)} centres, at most {MAX_KERNEL_CENTRES}")
        gamma = float(floats("kernel_gamma", (), MIN_SCALE, MAX_SCALE))
        weight = float(floats("kernel_weight", ()))
        if not 0 < weight < 1:
            raise bad(f"kernel_weight {weight:g} must be in (0, 1)")
        W = floats("kernel_W", (len(centres), N_CLASSES))
        kernel = Kernel(centres, gamma, W, floats("kernel_b", (N_CLASSES,)), weight)
    test_index = arrays.get("test_index")
    if test_index is not None:
        if (
            test_index.dtype.kind not in "iu"
            or test_index.ndim != 1
            or not len(test_index)
            or test_index.min() < 0
            or test_index.max() > _MAX_INDEX
        ):
            raise bad("test_index is not a list of indices")
        test_index = test_index.astype(np.int64)
    return Model(tuple(members), x_offset, x_scale, meta, test_index, kernel)


def _read_metadata(raw: np.ndarray | None, path: Path) -> dict[str, Any]:
    """The metadata dict, its size, depth, numbers and the figures eval shows checked.

    Parameters
    ----------
    raw : numpy.ndarray or None
        The ``metadata`` array (UTF-8 JSON as ``uint8``).
    path : pathlib.Path
        The model file, for messages.

    Returns
    -------
    dict
        With ``format`` and an int ``format_version`` this digitcli reads; ``cv``,
        ``test_accuracy`` and ``validation``, where present, as :func:`_recorded_problem`
        describes.
    """

    def bad(reason: str) -> ModelError:
        return _invalid(path, reason)

    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise bad("no metadata")
    if raw.size > MAX_METADATA_BYTES:
        raise bad(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    text = raw.tobytes()
    if _json_depth(text) > MAX_METADATA_DEPTH:
        raise bad(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    try:
        meta = json.loads(text.decode("utf-8"), parse_float=_finite, parse_constant=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("metadata is not JSON with finite numbers") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad("metadata does not name the digitcli model format")
    version = meta.get("format_version")
    if not _is_int(version, 1):
        raise bad("no format version")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"model file {path} has format version {version}, newer than this digitcli "
            f"reads ({FORMAT_VERSION}): upgrade digitcli"
        )
    problem = _recorded_problem(meta)
    if problem:
        raise bad(f"metadata {problem!r} is malformed")
    return meta


def _finite(text: str) -> float:
    """Parse a JSON number that is a float; refuse ``NaN``, ``Infinity`` and ``1e999``."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"non-finite number {text[:20]}")
    return number


def _json_depth(text: bytes) -> int:
    """How deeply JSON `text` nests arrays and objects, found without parsing it."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", text), dtype=np.uint8)  # strings dropped
    steps = np.isin(skeleton, list(b"[{")).astype(np.int64) - np.isin(skeleton, list(b"]}"))
    return int(np.cumsum(steps).max(initial=0))


def _is_int(value: Any, low: int, high: int = _MAX_INDEX) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _recorded_problem(meta: dict[str, Any]) -> str | None:
    """The first of the recorded figures ``digitcli eval`` shows that is malformed, if any.

    ``cv`` is ``{"folds": int >= 2, "mean": 0..1, "networks_per_fold": int >= 1 (optional)}``,
    ``test_accuracy`` is 0..1 and ``validation`` a list of
    ``{"images": str, "n": int >= 0, "accuracy": 0..1}`` (other keys are not checked).

    Parameters
    ----------
    meta : dict
        The parsed metadata.

    Returns
    -------
    str or None
        The malformed key, or None if all are well formed or absent.
    """
    if "cv" in meta:
        cv = meta["cv"]
        if not (
            isinstance(cv, dict)
            and _is_int(cv.get("folds"), 2)
            and _is_fraction(cv.get("mean"))
            and _is_int(cv.get("networks_per_fold", 1), 1)
        ):
            return "cv"
    if "test_accuracy" in meta and not _is_fraction(meta["test_accuracy"]):
        return "test_accuracy"
    if "validation" in meta:
        validation = meta["validation"]
        if not isinstance(validation, list) or not all(
            isinstance(v, dict)
            and isinstance(v.get("images"), str)
            and _is_int(v.get("n"), 0)
            and _is_fraction(v.get("accuracy"))
            for v in validation
        ):
            return "validation"
    return None
