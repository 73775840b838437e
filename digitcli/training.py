"""Training: augmentation, cross-validation, search and fitting on the data sets given.

scikit-learn is imported inside the functions that need it, never at module import, so that
``classify`` (which only needs :mod:`digitcli.model`) stays fast and small.
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from digitcli import __version__, datasets
from digitcli.conversion.pipeline import features_of, rows_from_masks
from digitcli.datasets import glyph_data, synthetic_data  # noqa: F401 (training.synthetic_data)
from digitcli.errors import DataError
from digitcli.model import MAX_KERNEL_CENTRES, Kernel, Layer, Model, rbf
from digitcli.parallel import ordered_map
from digitcli.recipe import DEFAULT_RECIPE, HOLDOUT_IMAGES, Recipe

#: The held-out part of Digits, never used for fitting or for choosing settings.
TEST_SIZE = 0.2
#: Seed of the stratified train/test split (fixed, so test figures stay comparable).
SPLIT_SEED = 0

#: ``progress(stage, done, total)`` is called as work completes.
ProgressFn = Callable[[str, int, int], None]

#: Extra training rows beside the base data: features (0..16), labels and each row's weight in
#: the loss (a base image weighs 1).
Extra = tuple[np.ndarray, np.ndarray, np.ndarray]


#: The model sees features / INPUT_SCALE (0..1).
INPUT_SCALE = 16.0

#: RBF width and inverse L2 penalty of the kernel member, for features on the 0..16 scale
#: (the values an RBF SVC does well with on Digits).
KERNEL_GAMMA = 1e-3
KERNEL_C = 10.0


@dataclass
class TrainResult:
    """What :func:`train` returns: the model and the figures behind it."""

    model: Model
    recipe: Recipe
    cv_scores: list[float]
    test_accuracy: float
    search_table: list[dict[str, Any]] | None = None
    #: Every source of the training data, as recorded in the metadata (``sources``).
    sources: list[dict[str, Any]] = field(default_factory=list)


def split_indices(y: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified 80/20 train/test split of row indices.

    Parameters
    ----------
    y : numpy.ndarray
        Labels.
    seed : int
        Split seed.

    Returns
    -------
    train_index, test_index : numpy.ndarray
        Sorted int64 indices.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=TEST_SIZE, stratify=y, random_state=seed)
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def holdout_indices(
    y: np.ndarray, fraction: float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of row indices into a fitting part and a held-out part.

    Of each digit's ``n`` rows, ``round(fraction * n)`` are held out (chosen at random with
    `seed`), but never all of them: a digit with one row keeps it for fitting.

    Parameters
    ----------
    y : numpy.ndarray
        Labels.
    fraction : float
        Share held out, in [0, 1).
    seed : int
        Seed of the choice.

    Returns
    -------
    fit_index, holdout_index : numpy.ndarray
        Sorted int64 indices.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for digit in np.unique(y):
        rows = np.flatnonzero(y == digit)
        k = min(int(np.floor(fraction * len(rows) + 0.5)), len(rows) - 1)
        held.append(rng.permutation(rows)[:k])
    holdout = np.sort(np.concatenate([np.zeros(0, np.int64), *held])).astype(np.int64)
    return np.setdiff1d(np.arange(len(y)), holdout).astype(np.int64), holdout


def augment(X: np.ndarray, y: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Add `copies` randomly distorted versions of each image, made the way real ones are.

    Each 8x8 image is enlarged to the 32x32 grid it was counted from, distorted there (a
    random rotation, shear and scaling, and a smooth elastic warp), cut at a random ink level
    (thinner or thicker strokes), and then put through the same NIST steps as a real image
    (:mod:`digitcli.conversion`: crop, 20x32 stretch, stroke-width normalisation, deslant, 4x4
    counts). The copies therefore vary only in ways that survive the conversion.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, 64)`` features.
    y : numpy.ndarray
        ``(n,)`` labels.
    copies : int
        Distorted copies per image; 0 returns the inputs.
    seed : int
        Seed of the distortions.

    Returns
    -------
    X_aug, y_aug : numpy.ndarray
        The originals followed by their copies (copy ``j`` of image ``i`` at
        ``n + i * copies + j``).
    """
    if copies <= 0:
        return X, y
    rng = np.random.default_rng(seed)
    originals = np.repeat(X, copies, axis=0)
    out = np.empty_like(originals)
    for start in range(0, len(originals), _STACK):
        rows = originals[start : start + _STACK]
        warped = np.empty((len(rows), _CANVAS, _CANVAS), dtype=np.float32)
        cuts = np.empty(len(rows))
        for k, row in enumerate(rows):
            warped[k] = _distorted_canvas(row, rng)
            cuts[k] = rng.uniform(0.35, 0.65)
        out[start : start + len(rows)] = _converted(warped, cuts, rows)
    return np.vstack([X, out]), np.concatenate([y, np.repeat(y, copies)])


#: Offset of the seeds of the synthetic glyphs' distorted copies from the member's seed.
SYNTH_COPY_SEED = 7_919
#: Offset of the seeds of the extra images' distorted copies from the member's seed.
EXTRA_COPY_SEED = 15_485_863


_CANVAS = 48  # the 32x32 grid with room around it for the distortions
_STACK = 512  # canvases converted together


def _distorted_canvas(row: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 8x8 image enlarged to its 32x32 grid on the canvas, randomly moved and warped."""
    grid = Image.fromarray((row.reshape(8, 8) / 16).astype(np.float32), mode="F")
    canvas = Image.new("F", (_CANVAS, _CANVAS), 0.0)
    canvas.paste(grid.resize((32, 32), Image.Resampling.BILINEAR), (8, 8))
    moved = np.asarray(
        canvas.transform(
            canvas.size, Image.Transform.AFFINE, _random_affine(rng), Image.Resampling.BILINEAR
        )
    )
    return _elastic(moved, rng, strength=3.0)


def _converted(warped: np.ndarray, cuts: np.ndarray, originals: np.ndarray) -> np.ndarray:
    """Cut each warped canvas at its ink level and convert the stack like real images.

    A canvas with no ink left gives its original image back.
    """
    rows, found = rows_from_masks(warped, warped >= cuts[:, None, None], 0.5)
    out = originals.copy()
    out[found] = features_of(rows[found])
    return out


def _random_affine(rng: np.random.Generator) -> tuple[float, ...]:
    """Inverse affine map (output -> input pixel) about the canvas centre, for PIL."""
    angle = np.radians(rng.uniform(-15, 15))
    shear = rng.uniform(-0.3, 0.3)
    scale_x, scale_y = rng.uniform(0.8, 1.2, size=2)
    c, s = np.cos(angle), np.sin(angle)
    forward = np.array([[c, -s], [s, c]]) @ np.array([[scale_x, shear], [0.0, scale_y]])
    inv = np.linalg.inv(forward)
    centre = np.full(2, _CANVAS / 2)
    offset = centre - inv @ centre
    return (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])


def _elastic(a: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Warp `a` by a smooth random displacement field of about `strength` pixels."""
    n = a.shape[0]

    def field() -> np.ndarray:
        coarse = Image.fromarray(rng.uniform(-1, 1, (8, 8)).astype(np.float32), mode="F")
        return np.asarray(coarse.resize((n, n), Image.Resampling.BICUBIC)) * strength

    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    sx = np.clip(xx + field(), 0, n - 1.001)
    sy = np.clip(yy + field(), 0, n - 1.001)
    x0, y0 = sx.astype(np.intp), sy.astype(np.intp)
    fx, fy = sx - x0, sy - y0
    return (
        a[y0, x0] * (1 - fx) * (1 - fy)
        + a[y0, x0 + 1] * fx * (1 - fy)
        + a[y0 + 1, x0] * (1 - fx) * fy
        + a[y0 + 1, x0 + 1] * fx * fy
    )


def fit_network(
    X: np.ndarray,
    y: np.ndarray,
    recipe: Recipe,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[Layer, ...]:
    """Fit one scikit-learn MLP (ReLU, Adam) on `X` / INPUT_SCALE and return its layers.

    Adam runs up to ``recipe.max_iter`` epochs, then ``recipe.anneal_epochs`` more with a
    new optimiser at a tenth of the step, from the weights reached.

    Parameters
    ----------
    X, y : numpy.ndarray
        Training features (0..16, already augmented) and labels.
    recipe : Recipe
        Settings.
    seed : int
        Seed of the weight initialisation and batch shuffling.
    sample_weight : numpy.ndarray or None
        Weight of each row in the loss (``None``: all 1).

    Returns
    -------
    tuple of (W, b)
        Layers in the form :class:`digitcli.model.Model` runs.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=recipe.hidden_layers,
        activation="relu",
        solver="adam",
        alpha=recipe.alpha,
        max_iter=recipe.max_iter,
        batch_size=recipe.batch_size,
        learning_rate_init=recipe.learning_rate,
        random_state=seed,
    )
    from threadpoolctl import threadpool_limits

    inputs = X / INPUT_SCALE
    # One BLAS thread: fits run side by side in worker processes, and a parent's fit on a
    # loaded machine is many times slower with threads fighting for the cores. Warning
    # filters and BLAS limits belong to the whole process: in threads (joblib's threading
    # backend), fits take turns.
    with (
        _FIT_LOCK,
        warnings.catch_warnings(record=True) as caught,
        threadpool_limits(limits=1),
    ):
        warnings.simplefilter("always", UserWarning)  # seen below, whatever the caller's filters
        # Stopping at max_iter is a recipe choice, not a fault (a UserWarning: filtered first).
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(inputs, y, sample_weight=sample_weight)
        _raise_if_interrupted(caught)
        if recipe.anneal_epochs:
            # A new Adam with a smaller step, starting from the weights fitted so far.
            clf.set_params(
                warm_start=True,
                learning_rate_init=recipe.learning_rate / 10,
                max_iter=recipe.anneal_epochs,
            )
            clf.fit(inputs, y, sample_weight=sample_weight)
            _raise_if_interrupted(caught)
    for warning in caught:  # any other warning is the caller's to see
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if list(clf.classes_) != list(range(10)):
        raise ValueError("training data must hold all ten digits")
    return tuple((W.copy(), b.copy()) for W, b in zip(clf.coefs_, clf.intercepts_, strict=True))


#: Held by a fit: see :func:`fit_network`.
_FIT_LOCK = threading.Lock()


def _raise_if_interrupted(caught: list[warnings.WarningMessage]) -> None:
    """scikit-learn's MLP swallows Ctrl-C (it warns and returns the half-fitted net): stop."""
    if any("interrupted by user" in str(w.message) for w in caught):
        raise KeyboardInterrupt


def fit_recipe(
    X: np.ndarray,
    y: np.ndarray,
    recipe: Recipe,
    seed: int,
    n_jobs: int = 1,
    glyphs: tuple[np.ndarray, np.ndarray] | None = None,
    progress: ProgressFn | None = None,
    extra: Extra | None = None,
) -> list[tuple[Layer, ...]]:
    """Fit every member of a recipe's ensemble on (augmented) training data.

    Member ``k`` uses seed ``seed + k`` for its distorted copies and its weights. Each
    member's training data are the originals (``recipe.originals`` times), their distorted
    copies, the recipe's synthetic glyphs (:func:`synthetic_data`) and cut pieces of
    synthetic numbers (:func:`~digitcli.datasets.piece_data`) with one distorted copy of
    each, weighted ``recipe.glyph_weight`` in the loss, and the `extra` rows,
    treated like the originals (``recipe.originals`` times, ``recipe.augment`` distorted
    copies) with their own weights.

    Parameters
    ----------
    X, y : numpy.ndarray
        Training features (0..16) and labels, not augmented.
    recipe : Recipe
        Settings.
    seed : int
        Base seed.
    n_jobs : int
        Workers over the members (:func:`digitcli.parallel.ordered_map`; -1 = all cores).
    glyphs : tuple of numpy.ndarray or None
        ``glyph_data(recipe.synthetic, recipe.pieces)`` if the caller has it already
        (they take seconds to draw, and workers would each draw them again).
    progress : callable or None
        ``progress("fit", done, recipe.ensemble)`` as each member is fitted.
    extra : tuple of numpy.ndarray or None
        ``(X, y, weight)``: more images (say a writer's own, :func:`train`'s `images`)
        and each one's weight in the loss.

    Returns
    -------
    list of tuple of (W, b)
        One network per member.
    """
    if recipe.synthetic <= 0 and recipe.pieces <= 0:
        glyphs = None
    elif glyphs is None:
        glyphs = glyph_data(recipe.synthetic, recipe.pieces)

    fit = functools.partial(
        _fit_member, X=X, y=y, recipe=recipe, seed=seed, glyphs=glyphs, extra=extra
    )
    fitted = ordered_map(fit, range(recipe.ensemble), jobs=n_jobs)
    members = []
    for network in fitted:
        members.append(network)
        if progress:
            progress("fit", len(members), recipe.ensemble)
    return members


def _fit_member(
    k: int,
    X: np.ndarray,
    y: np.ndarray,
    recipe: Recipe,
    seed: int,
    glyphs: tuple[np.ndarray, np.ndarray] | None,
    extra: Extra | None,
) -> tuple[Layer, ...]:
    """Fit member `k` of :func:`fit_recipe` (a task of :func:`digitcli.parallel.ordered_map`)."""
    Xa, ya = augment(X, y, recipe.augment, seed + k)
    if recipe.originals > 1:
        again = recipe.originals - 1
        Xa = np.vstack([Xa, *[X] * again])
        ya = np.concatenate([ya, *[y] * again])
    parts, labels, weights = [Xa], [ya], [np.ones(len(ya))]
    if glyphs is not None:
        Xs, ys = augment(*glyphs, 1, seed + k + SYNTH_COPY_SEED)
        parts.append(Xs)
        labels.append(ys)
        weights.append(np.full(len(ys), recipe.glyph_weight))
    if extra is not None and len(extra[1]):
        Xe, ye, we = extra
        Xc, yc = augment(Xe, ye, recipe.augment, seed + k + EXTRA_COPY_SEED)
        repeats = recipe.originals - 1
        parts.extend([Xc, *[Xe] * repeats])
        labels.extend([yc, *[ye] * repeats])
        weights.extend([we, np.repeat(we, recipe.augment), *[we] * repeats])
    weight = np.concatenate(weights)
    Xa, ya = np.vstack(parts), np.concatenate(labels)
    return fit_network(Xa, ya, recipe, seed + k, None if np.all(weight == 1) else weight)


def fit_kernel(
    X: np.ndarray, y: np.ndarray, weight: float, sample_weight: np.ndarray | None = None
) -> Kernel:
    """Fit the kernel member: logistic regression on RBF similarities to the training images.

    The centres are the original training images (no copies, no glyphs). A kernel machine
    errs on other images than the networks do, which is what makes it worth a share of
    the average.

    Parameters
    ----------
    X, y : numpy.ndarray
        Training features (0..16) and labels, not augmented.
    weight : float
        The member's share of the model's average, in (0, 1).
    sample_weight : numpy.ndarray or None
        Weight of each image in the loss (``None``: all 1).

    Returns
    -------
    Kernel
        Centres scaled like the networks' inputs (``X / INPUT_SCALE``).
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    centres = X / INPUT_SCALE
    gamma = KERNEL_GAMMA * INPUT_SCALE**2  # the same width on the model's input scale
    clf = LogisticRegression(C=KERNEL_C, max_iter=5000)
    # One BLAS thread: the same coefficients on any machine (sums in another order differ
    # in the last bits), and faster than threads on these sizes (0.5 s against 2.6 s).
    with threadpool_limits(limits=1):
        clf.fit(rbf(centres, centres, gamma), y, sample_weight=sample_weight)
    if list(clf.classes_) != list(range(10)):
        raise ValueError("training data must hold all ten digits")
    return Kernel(centres, gamma, clf.coef_.T.copy(), clf.intercept_.copy(), weight)


def fit_model(
    X: np.ndarray,
    y: np.ndarray,
    recipe: Recipe,
    seed: int,
    n_jobs: int = 1,
    glyphs: tuple[np.ndarray, np.ndarray] | None = None,
    progress: ProgressFn | None = None,
    extra: Extra | None = None,
) -> Model:
    """Fit a recipe's networks (:func:`fit_recipe`) and its kernel member, as a :class:`Model`.

    Parameters are those of :func:`fit_recipe`. The `extra` images are centres of the
    kernel member too, with their weights.

    Returns
    -------
    Model
        Without metadata or test index.
    """
    members = fit_recipe(X, y, recipe, seed, n_jobs, glyphs, progress, extra)
    kernel = None
    if recipe.kernel_weight > 0:
        if extra is not None and len(extra[1]):
            Xe, ye, we = extra
            sample_weight = np.concatenate([np.ones(len(y)), we])
            Xk, yk = np.vstack([X, Xe]), np.concatenate([y, ye])
            kernel = fit_kernel(Xk, yk, recipe.kernel_weight, sample_weight)
        else:
            kernel = fit_kernel(X, y, recipe.kernel_weight)
    return make_model(members, {}, kernel=kernel)


def make_model(
    members: list[tuple[Layer, ...]],
    metadata: dict[str, Any],
    test_index: np.ndarray | None = None,
    kernel: Kernel | None = None,
) -> Model:
    """Wrap fitted networks and kernel member (inputs / INPUT_SCALE) as a :class:`Model`."""
    scale = np.full(64, INPUT_SCALE)
    return Model(tuple(members), np.zeros(64), scale, metadata, test_index, kernel)


#: One cross-validation fit: the recipe's index, the fold's, the recipe, the fold's rows.
_FoldTask = tuple[int, int, Recipe, np.ndarray, np.ndarray]


def _fold_score(
    task: _FoldTask,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    glyphs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]],
    extra: Extra | None = None,
) -> tuple[tuple[int, int], float]:
    """Fit a fold and score it (a task of :func:`digitcli.parallel.ordered_map`).

    The folds split `X`; every fold's fit has the `extra` rows too.
    """
    r, f, recipe, train, valid = task
    glyphs_of = glyphs.get((recipe.synthetic, recipe.pieces))
    model = fit_model(X[train], y[train], recipe, seed + f, glyphs=glyphs_of, extra=extra)
    digits, _ = model.predict(X[valid])
    return (r, f), float((digits == y[valid]).mean())


def _cv_jobs(
    X: np.ndarray,
    y: np.ndarray,
    recipes: Sequence[Recipe],
    folds: int,
    seed: int,
    n_jobs: int,
    progress: ProgressFn | None,
    stage: str,
    extra: Extra | None = None,
) -> dict[int, list[float]]:
    """Score every recipe by stratified k-fold CV, all fits in one parallel map.

    The folds split `X`; every fold's fit has the `extra` rows too.
    """
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y))
    glyphs = {
        (n, p): glyph_data(n, p)
        for n, p in {(r.synthetic, r.pieces) for r in recipes}
        if n > 0 or p > 0
    }
    tasks = [
        (r, f, recipe, tr, va)
        for r, recipe in enumerate(recipes)
        for f, (tr, va) in enumerate(splits)
    ]
    scores: dict[int, dict[int, float]] = {r: {} for r in range(len(recipes))}
    if progress:
        progress(stage, 0, len(tasks))
    score = functools.partial(_fold_score, X=X, y=y, seed=seed, glyphs=glyphs, extra=extra)
    for done, ((r, f), value) in enumerate(ordered_map(score, tasks, jobs=n_jobs), start=1):
        scores[r][f] = value
        if progress:
            progress(stage, done, len(tasks))
    return {r: [s[f] for f in sorted(s)] for r, s in scores.items()}


def grid_recipes(base: Recipe, grid: dict[str, Iterable[Any]]) -> list[Recipe]:
    """Every combination of `grid`'s values applied to `base`."""
    names = list(grid)
    return [
        Recipe(**{**asdict(base), **dict(zip(names, values, strict=True))})
        for values in itertools.product(*(grid[n] for n in names))
    ]


def validate(
    model: Model, folders: Sequence[str], progress: ProgressFn | None = None
) -> list[dict[str, Any]]:
    """Accuracy of `model` on labelled image folders, through the classify conversion.

    Returns
    -------
    list of dict
        Per folder: ``images`` (the folder), ``n``, ``accuracy``, ``failed``.
    """
    from digitcli.evaluation import evaluate_folder

    out = []
    for i, folder in enumerate(folders):
        if progress:
            progress("validate", i, len(folders))
        y_true, y_pred, _ = evaluate_folder(folder, model)
        out.append(
            {
                "images": str(folder),
                "n": int(len(y_true)),
                "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
                "failed": int((y_pred < 0).sum()),
            }
        )
    if progress:
        progress("validate", len(folders), len(folders))
    return out


def train(
    recipe: Recipe = DEFAULT_RECIPE,
    *,
    seed: int = 0,
    folds: int = 10,
    cv_ensemble: bool = False,
    n_jobs: int = -1,
    search: dict[str, Iterable[Any]] | None = None,
    validate_images: Sequence[str] = (),
    progress: ProgressFn | None = None,
    base: datasets.Dataset | None = None,
    images: Sequence[datasets.Dataset] = (),
    images_weight: float = 1.0,
    holdout_images: float = HOLDOUT_IMAGES,
    baseline: Model | None = None,
) -> TrainResult:
    """Fit a model on the 80% training part of the base data and test it on the other 20%.

    Parameters
    ----------
    recipe : Recipe
        Settings (the base of the search if `search` is given).
    seed : int
        Seed of the weights, augmentation and CV folds.
    folds : int
        Cross-validation folds on the training part (2 or more).
    cv_ensemble : bool
        Fit the whole ensemble in every fold (``ensemble`` times the work) instead of
        one network; a search always does.
    n_jobs : int
        Workers for cross-validation, search and the ensemble
        (:func:`digitcli.parallel.ordered_map`; -1 = all cores).
    search : dict or None
        Grid of Recipe fields to try; the best mean CV accuracy wins.
    validate_images : sequence of str
        Labelled image folders (``DIR/<digit>/<file>``) to measure the final model on,
        through the classify conversion. They are only measured, never fitted.
    progress : callable or None
        ``progress(stage, done, total)``.
    base : tuple or None
        ``(X, y, source)`` split 80/20 (:func:`split_indices`) into training and test
        parts; ``None`` loads Digits (:func:`digitcli.datasets.digits`). The model records
        the test part's indices only when the base is Digits (``digitcli eval`` finds them).
    images : sequence of tuple
        More data sets ``(X, y, source)`` (say :func:`digitcli.datasets.labelled_folder`
        of a writer's own digits). A stratified `holdout_images` part of each is kept out
        and scored; the rest is added to every fit (cross-validation folds included), each
        image treated like a base image: ``recipe.originals`` times and ``recipe.augment``
        distorted copies.
    images_weight : float
        Weight in the loss of each of those images and copies (a base image weighs 1).
    holdout_images : float
        Share of each of `images` held out, per digit, in [0, 1) (0 = fit them all).
    baseline : Model or None
        A model to score on the same held-out parts too (say the shipped one), for a
        before/after comparison.

    Returns
    -------
    TrainResult
    """
    import sklearn

    if not images_weight > 0 or not np.isfinite(images_weight):
        raise ValueError(f"images_weight must be a positive number, got {images_weight}")
    X, y, base_source = base if base is not None else datasets.digits()
    train_idx, test_idx = split_indices(y)
    Xtr, ytr = X[train_idx], y[train_idx]
    fitted_parts, held_parts = [], []
    for Xi, yi, _ in images:
        fit_i, hold_i = holdout_indices(yi, holdout_images)
        fitted_parts.append((Xi[fit_i], yi[fit_i]))
        held_parts.append((Xi[hold_i], yi[hold_i]))
    extra = _extra_rows(fitted_parts, images_weight)
    centres = len(ytr) + (len(extra[1]) if extra is not None else 0)
    if recipe.kernel_weight > 0 and centres > MAX_KERNEL_CENTRES:
        raise DataError(
            f"{centres} training images: the kernel member takes at most "
            f"{MAX_KERNEL_CENTRES} (fit without it: kernel weight 0)"
        )

    cv = functools.partial(
        _cv_jobs, Xtr, ytr, folds=folds, seed=seed, n_jobs=n_jobs, progress=progress, extra=extra
    )
    recipe, cv_scores, per_fold, table = _choose_recipe(recipe, cv, search, cv_ensemble)
    if progress:
        progress("fit", 0, recipe.ensemble)
    model = fit_model(Xtr, ytr, recipe, seed, n_jobs, progress=progress, extra=extra)
    if base_source.kind == "digits":
        model = replace(model, test_index=test_idx)
    test_accuracy = _accuracy(model, X[test_idx], y[test_idx])
    sources = [
        {
            "role": "base",
            **base_source.to_dict(),
            "weight": 1.0,
            "n_fit": int(len(train_idx)),
            "n_test": int(len(test_idx)),
        }
    ]
    if recipe.synthetic > 0:
        glyphs = datasets.synthetic(recipe.synthetic)[2].to_dict()
        sources.append({"role": "synthetic", **glyphs, "weight": recipe.glyph_weight})
    if recipe.pieces > 0:
        cut = datasets.pieces(recipe.pieces)[2].to_dict()
        sources.append({"role": "pieces", **cut, "weight": recipe.glyph_weight})
    for source, fitted, held in zip(images, fitted_parts, held_parts, strict=True):
        sources.append(_images_record(source[2], fitted, held, images_weight, model, baseline))
    metadata = {
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": {
            "digitcli": __version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "recipe": {**asdict(recipe), "hidden_layers": list(recipe.hidden_layers)},
        "seed": seed,
        "split": {
            "data": base_source.name,
            "test_size": TEST_SIZE,
            "seed": SPLIT_SEED,
            "stratified": True,
            "n_train": int(len(train_idx)),
            "n_test": int(len(test_idx)),
        },
        "sources": sources,
        "cv": {
            "folds": folds,
            "networks_per_fold": per_fold,
            "mean": float(np.mean(cv_scores)),
            "scores": cv_scores,
        },
        "test_accuracy": test_accuracy,
    }
    if images:
        metadata["holdout_images"] = float(holdout_images)
    if table is not None:
        metadata["search"] = table
    if validate_images:
        metadata["validation"] = validate(model, validate_images, progress)
    return TrainResult(
        replace(model, metadata=metadata), recipe, cv_scores, test_accuracy, table, sources
    )


def _choose_recipe(
    recipe: Recipe,
    cv: Callable[..., dict[int, list[float]]],
    search: dict[str, Iterable[Any]] | None,
    cv_ensemble: bool,
) -> tuple[Recipe, list[float], int, list[dict[str, Any]] | None]:
    """The recipe to fit, its CV scores, the networks per fold and the search's table.

    `cv(recipes, stage=...)` scores recipes by cross-validation (:func:`_cv_jobs`).
    """
    if not search:
        # By default one network per fold keeps cross-validation affordable; the ensemble
        # averages several such networks and is scored on the held-out test split.
        per_fold = recipe.ensemble if cv_ensemble else 1
        scores = cv([replace(recipe, ensemble=per_fold)], stage="cross-validate")[0]
        return recipe, scores, per_fold, None
    candidates = grid_recipes(recipe, search)
    scores_of = cv(candidates, stage="search")
    table = [
        {
            "recipe": c.describe(),
            "cv_mean": float(np.mean(scores_of[i])),
            "cv_std": float(np.std(scores_of[i])),
        }
        for i, c in enumerate(candidates)
    ]
    best = max(range(len(candidates)), key=lambda i: (np.mean(scores_of[i]), -i))
    return candidates[best], scores_of[best], candidates[best].ensemble, table


def _images_record(
    source: datasets.Source,
    fitted: tuple[np.ndarray, np.ndarray],
    held: tuple[np.ndarray, np.ndarray],
    weight: float,
    model: Model,
    baseline: Model | None,
) -> dict[str, Any]:
    """The metadata of one of train's `images` sets: counts, weight, held-out scores."""
    X_held, y_held = held
    record = {
        "role": "images",
        **source.to_dict(),
        "weight": float(weight),
        "n_fit": int(len(fitted[1])),
        "n_holdout": int(len(y_held)),
    }
    if len(y_held):
        record["holdout_accuracy"] = _accuracy(model, X_held, y_held)
        if baseline is not None:
            record["baseline_accuracy"] = _accuracy(baseline, X_held, y_held)
    return record


def _extra_rows(parts: list[tuple[np.ndarray, np.ndarray]], weight: float) -> Extra | None:
    """The fitted parts of the extra data sets as one :data:`Extra`, or None if empty."""
    if not parts or not sum(len(y) for _, y in parts):
        return None
    Xe = np.vstack([X for X, _ in parts])
    ye = np.concatenate([y for _, y in parts])
    return Xe, ye, np.full(len(ye), float(weight))


def _accuracy(model: Model, X: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(X)[0] == y).mean())
