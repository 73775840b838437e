"""Classification metrics (numpy only) and their rich rendering."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitcli.model import N_CLASSES

if TYPE_CHECKING:
    from rich.console import RenderableType

    from digitcli.batch import Result
    from digitcli.model import Model


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class and averaged precision/recall/F1, and the confusion matrix.

    Parameters
    ----------
    y_true : numpy.ndarray
        True digits 0..9.
    y_pred : numpy.ndarray
        Predicted digits 0..9, or -1 where no prediction could be made (an image that could
        not be converted): it counts as wrong, lowers the recall of its true class and is
        left out of the confusion matrix.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``failed``, ``macro`` and ``weighted`` (precision, recall, f1),
        ``per_class`` (digit, precision, recall, f1, support), ``confusion_matrix``
        (rows: true digit, columns: predicted). Classes with no samples or no predictions
        score 0, as scikit-learn's ``zero_division=0``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError("y_true and y_pred must be 1-D and of the same length")
    n = len(y_true)
    made = y_pred >= 0
    cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(cm, (y_true[made], y_pred[made]), 1)
    support = np.bincount(y_true, minlength=N_CLASSES)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(N_CLASSES), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(N_CLASSES), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(N_CLASSES), where=denom > 0)
    weights = support / n if n else np.zeros(N_CLASSES)

    def avg(w: np.ndarray | None) -> dict[str, float]:
        return {
            name: float(np.average(v, weights=w)) if w is None or w.sum() else 0.0
            for name, v in (("precision", precision), ("recall", recall), ("f1", f1))
        }

    return {
        "n": int(n),
        "accuracy": float((y_true == y_pred).mean()) if n else 0.0,
        "failed": int((~made).sum()),
        "macro": avg(None),
        "weighted": avg(weights),
        "per_class": [
            {
                "digit": d,
                "precision": float(precision[d]),
                "recall": float(recall[d]),
                "f1": float(f1[d]),
                "support": int(support[d]),
            }
            for d in range(N_CLASSES)
        ],
        "confusion_matrix": cm.tolist(),
    }


def render_metrics(
    metrics: dict[str, Any], title: str, notes: list[str] | None = None
) -> list[RenderableType]:
    """Rich tables of :func:`compute_metrics`' result.

    Parameters
    ----------
    metrics : dict
        From :func:`compute_metrics`.
    title : str
        What was evaluated.
    notes : list of str or None
        Extra lines shown under the summary (e.g. the model's recorded figures).

    Returns
    -------
    list
        Renderables to print in order.
    """
    from rich.table import Table

    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("images", str(metrics["n"]))
    summary.add_row("accuracy", f"{metrics['accuracy']:.4f}")
    if metrics["failed"]:
        summary.add_row("failed to convert", str(metrics["failed"]))
    for avg in ("macro", "weighted"):
        m = metrics[avg]
        summary.add_row(
            f"{avg} avg P / R / F1",
            f"{m['precision']:.4f} / {m['recall']:.4f} / {m['f1']:.4f}",
        )
    for note in notes or []:
        summary.add_row("", note)

    per_class = Table(title="per digit", title_justify="left")
    for name in ("digit", "precision", "recall", "f1", "support"):
        per_class.add_column(name, justify="right")
    for row in metrics["per_class"]:
        per_class.add_row(
            str(row["digit"]),
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            str(row["support"]),
        )

    confusion = Table(
        title="confusion matrix (rows: true, columns: predicted)", title_justify="left"
    )
    confusion.add_column("", style="bold", justify="right")
    for d in range(N_CLASSES):
        confusion.add_column(str(d), justify="right")
    for d, counts in enumerate(metrics["confusion_matrix"]):
        cells = [
            (f"[green]{c}[/]" if i == d else (f"[red]{c}[/]" if c else "[dim]0[/]"))
            for i, c in enumerate(counts)
        ]
        confusion.add_row(str(d), *cells)
    return [summary, per_class, confusion]


#: A pair of bitmap rows as one character: (upper pixel on, lower pixel on).
_HALF_BLOCKS = {(False, False): " ", (True, False): "\u2580", (False, True): "\u2584"}
_HALF_BLOCKS[True, True] = "\u2588"


def bitmap_text(bitmap: np.ndarray) -> str:
    """A bool bitmap as text, two rows per line in half-block characters (on = ink).

    Parameters
    ----------
    bitmap : numpy.ndarray
        bool ``(h, w)``, h even.

    Returns
    -------
    str
        ``h / 2`` lines of ``w`` characters, framed by nothing.
    """
    return "\n".join(
        "".join(_HALF_BLOCKS[bool(a), bool(b)] for a, b in zip(upper, lower, strict=True))
        for upper, lower in zip(bitmap[0::2], bitmap[1::2], strict=True)
    )


#: Background grey level (0-255, the same for red, green and blue) of the 8x8 grid's values
#: 1..16: value ``v`` is ``GRID_RAMP[v - 1]``, light to dark in equal steps, so every value
#: has its own shade on dark and light terminals alike. 0 is drawn as a dim "." instead.
GRID_RAMP: tuple[int, ...] = tuple(range(230, 19, -14))

#: Text on a background grey level below this is white, otherwise black: at about 118 black
#: and white text contrast equally with the grey (WCAG contrast ratio about 4.6 each).
#: Both are given as RGB too, so a terminal theme's "black" and "white" cannot blur them.
GRID_WHITE_TEXT_BELOW = 118
GRID_BLACK_TEXT, GRID_WHITE_TEXT = "#000000", "#ffffff"

#: Style of the grid's zeros (a "." with no background).
GRID_ZERO_STYLE = "grey50"


def _grid_style(value: int) -> str:
    """The rich style of one grid value: a grey background from :data:`GRID_RAMP`.

    Parameters
    ----------
    value : int
        0..16.

    Returns
    -------
    str
        ``"#000000 on #rrggbb"`` (black text) or ``"#ffffff on #rrggbb"`` (white text);
        :data:`GRID_ZERO_STYLE` for 0.
    """
    if not value:
        return GRID_ZERO_STYLE
    level = GRID_RAMP[value - 1]
    text = GRID_WHITE_TEXT if level < GRID_WHITE_TEXT_BELOW else GRID_BLACK_TEXT
    return f"{text} on #{level:02x}{level:02x}{level:02x}"


def render_grid(
    name: str,
    grid: np.ndarray,
    probabilities: np.ndarray | None,
    error: str = "",
    bitmap: np.ndarray | None = None,
) -> RenderableType:
    """A rich panel showing what the model sees: the 8x8 grid, the prediction, the top 3.

    Parameters
    ----------
    name : str
        The image's name (the panel's title).
    grid : numpy.ndarray
        ``(8, 8)`` values 0..16, or empty when the image could not be converted.
    probabilities : numpy.ndarray or None
        ``(10,)`` class probabilities.
    error : str
        Why the image could not be converted, if it could not.
    bitmap : numpy.ndarray or None
        The normalised ``(32, 32)`` bitmap the grid counts, drawn to the left of the grid
        (a hollowed or broken stroke shows there), or None.

    Returns
    -------
    rich renderable
    """
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    if error or probabilities is None:
        return Panel(
            Text(f"error: {error}", style="red"), title=name, title_align="left", expand=False
        )
    cells = Table.grid(padding=0)
    for _ in range(8):
        cells.add_column(justify="right", width=3)
    for row in grid.astype(int):
        cells.add_row(*(Text(f"{v:>3}" if v else "  .", style=_grid_style(v)) for v in row))
    order = np.argsort(probabilities)[::-1][:3]
    best = int(order[0])
    side = Text()
    side.append(f"digit {best}\n", style="bold")
    side.append(f"confidence {probabilities[best]:.4f}\n\n")
    for d in order:
        bar = "#" * round(float(probabilities[d]) * 20)
        side.append(f"{int(d)}  {probabilities[d]:.4f} {bar}\n")
    layout = Table.grid(padding=(0, 3))
    if bitmap is None:
        layout.add_row(cells, side)
    else:
        drawn = Text(bitmap_text(bitmap), style="on grey15", no_wrap=True)
        layout.add_row(drawn, cells, side)
    return Panel(layout, title=name, title_align="left", expand=False)


#: One misread image on the error sheet: its path, the true digit, the digit read (-1 when
#: the image could not be converted), the 8x8 grid the model saw (None when it could not)
#: and the confidence of the digit read (None when there is none).
SheetEntry = tuple[str | os.PathLike[str], int, int, np.ndarray | None, float | None]

#: Cells on one error sheet page at most; more misread images make more pages.
SHEET_CELLS = 200
#: Cells in a row of the error sheet.
SHEET_COLUMNS = 4
#: Side in pixels of a cell's two pictures: the image and the 8x8 grid.
SHEET_THUMB = 72
#: Pixels between the image and the grid.
SHEET_THUMB_GAP = 8
#: Pixels between the pictures and the first label line.
SHEET_LABEL_GAP = 4
#: Height in pixels of a label line (Pillow's default font is 13 pixels high).
SHEET_LINE = 14
#: Label lines under the pictures: the file name, then truth, reading and confidence.
SHEET_LABEL_LINES = 2
#: Width in pixels of a cell's content (the two pictures; labels are shortened to it).
SHEET_CONTENT_WIDTH = 2 * SHEET_THUMB + SHEET_THUMB_GAP
#: Blank pixels right of a cell and below it.
SHEET_COLUMN_GAP, SHEET_ROW_GAP = 12, 6
#: Horizontal and vertical distance in pixels from one cell to the next.
SHEET_CELL_WIDTH = SHEET_CONTENT_WIDTH + SHEET_COLUMN_GAP
SHEET_CELL_HEIGHT = SHEET_THUMB + SHEET_LABEL_GAP + SHEET_LABEL_LINES * SHEET_LINE + SHEET_ROW_GAP
#: Put in the middle of a file name too long for its cell.
ELLIPSIS = "\u2026"


def _shorten_middle(text: str, fits: Callable[[str], bool]) -> str:
    """`text`, or as much of its start and end as fits with :data:`ELLIPSIS` between them.

    Parameters
    ----------
    text : str
        A file name.
    fits : callable
        Whether a string is short enough.

    Returns
    -------
    str
        `text` if it fits, else its start, the ellipsis and its end, as many characters
        of each as fit (the start gets one more when the count is odd), so the name's
        beginning and its suffix (``.png``) stay visible.
    """
    if fits(text):
        return text

    def cut(keep: int) -> str:
        tail = keep // 2
        return text[: keep - tail] + ELLIPSIS + text[len(text) - tail :]

    lo, hi = 0, len(text) - 1  # the most characters kept that fit lies in lo..hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(cut(mid)):
            lo = mid
        else:
            hi = mid - 1
    return cut(lo)


def _cell_label(
    path: str | os.PathLike[str],
    truth: int,
    predicted: int,
    confidence: float | None,
    fits: Callable[[str], bool] | None = None,
) -> str:
    """The two label lines of an error sheet cell.

    Parameters
    ----------
    path : str or path-like
        The image file; its name (without folders, unprintable characters as ``?``) is the
        first line.
    truth : int
        The true digit.
    predicted : int
        The digit read, or -1 when the image could not be converted.
    confidence : float or None
        The model's probability of the digit read.
    fits : callable or None
        Whether a line is short enough for the cell; the file name is shortened in the
        middle (see :func:`_shorten_middle`) until it does. None: no shortening.

    Returns
    -------
    str
        ``"name.png\ntrue 3  read 5  97%"`` (the confidence in whole percent, 100% only if 1);
        ``read none`` and no confidence when the image could not be converted.
    """
    # A name may hold line breaks or undecodable bytes (surrogates): "?" for anything unprintable.
    name = "".join(c if c.isprintable() else "?" for c in Path(path).name)
    if fits is not None:
        name = _shorten_middle(name, fits)
    said = "none" if predicted < 0 else str(predicted)
    reading = f"true {truth}  read {said}"
    if predicted >= 0 and confidence is not None:
        # 0.996 shows 99%: a misread never looks certain unless the model was
        percent = min(round(confidence * 100), 100 if confidence >= 1 else 99)
        reading += f"  {percent}%"
    return f"{name}\n{reading}"


def _cell_origin(index: int) -> tuple[int, int]:
    """The top left corner in pixels of cell `index` (0-based) on its page."""
    return (index % SHEET_COLUMNS) * SHEET_CELL_WIDTH, (index // SHEET_COLUMNS) * SHEET_CELL_HEIGHT


def page_paths(path: Path, pages: int) -> list[Path]:
    """`path` for one page; ``stem-1.png``, ``stem-2.png``, ... beside it for more."""
    if pages == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{n}.png") for n in range(1, pages + 1)]


def error_sheet(entries: Sequence[SheetEntry], path: str | os.PathLike[str]) -> list[Path]:
    """Write contact sheets of misread images: original, 8x8 grid, name, digits, confidence.

    Each cell shows the image and the grid the model saw side by side, then the image's
    file name (shortened in the middle when too long) and ``true T  read R  C%``. A page
    holds at most :data:`SHEET_CELLS` cells, :data:`SHEET_COLUMNS` to a row.

    Parameters
    ----------
    entries : sequence of (path, truth, predicted, grid, confidence)
        The misread images (see :data:`SheetEntry`): image path, true digit, digit read or
        -1, ``(8, 8)`` grid of values 0..16 or None, confidence of the digit read or None.
    path : str or path-like
        The PNG to write. When the entries need several pages, ``stem-1.png``,
        ``stem-2.png``, ... are written beside it instead (``errors.png`` gives
        ``errors-1.png``, ``errors-2.png``) and `path` itself is not.

    Returns
    -------
    list of pathlib.Path
        The files written, in page order; empty (nothing written) when `entries` is.

    Raises
    ------
    OSError
        If a page cannot be written (the pages before it are).
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    from digitcli.conversion.decode import open_image
    from digitcli.errors import ImageError

    font = ImageFont.load_default()

    def fits(line: str) -> bool:
        return font.getlength(line) <= SHEET_CONTENT_WIDTH

    pages = [entries[i : i + SHEET_CELLS] for i in range(0, len(entries), SHEET_CELLS)]
    targets = page_paths(Path(path), len(pages))
    for page, target in zip(pages, targets, strict=True):
        rows = math.ceil(len(page) / SHEET_COLUMNS)
        sheet = Image.new(
            "RGB", (SHEET_COLUMNS * SHEET_CELL_WIDTH, rows * SHEET_CELL_HEIGHT), "white"
        )
        draw = ImageDraw.Draw(sheet)
        for i, (image_path, truth, predicted, grid, confidence) in enumerate(page):
            x, y = _cell_origin(i)
            try:
                original = ImageOps.pad(
                    open_image(image_path).convert("RGB"), (SHEET_THUMB, SHEET_THUMB), color="white"
                )
            except ImageError:
                original = Image.new("RGB", (SHEET_THUMB, SHEET_THUMB), "lightgrey")
            sheet.paste(original, (x, y))
            if grid is not None:
                g = Image.fromarray(np.clip(255 - grid * 255 / 16, 0, 255).astype(np.uint8))
                g = g.resize((SHEET_THUMB, SHEET_THUMB), Image.Resampling.NEAREST)
                sheet.paste(g.convert("RGB"), (x + SHEET_THUMB + SHEET_THUMB_GAP, y))
            label = _cell_label(image_path, truth, predicted, confidence, fits)
            for n, line in enumerate(label.split("\n")):
                top = y + SHEET_THUMB + SHEET_LABEL_GAP + n * SHEET_LINE
                draw.text((x, top), line, fill="black", font=font)
        sheet.save(target, format="PNG")
    return targets


@dataclass(frozen=True)
class View:
    """What the model sees of one image: its bitmap and grid, and how they read."""

    path: str
    bitmap: np.ndarray | None = None  # bool (32, 32)
    grid: np.ndarray | None = None  # int (8, 8), 0..16
    probabilities: np.ndarray | None = None  # (10,)
    error: str = ""


def views(paths: Iterable[str], model: Model, *, invert: bool | None = None) -> Iterator[View]:
    """Convert images one at a time and read them: what ``digitcli show`` draws.

    Parameters
    ----------
    paths : iterable of str
        Image files.
    model : Model
        The classifier.
    invert : bool or None
        Polarity for the conversion.

    Yields
    ------
    View
        One per path, in order; ``error`` says why an image has no grid.
    """
    from digitcli.conversion.nist import block_counts, pack
    from digitcli.conversion.pipeline import bitmaps_from_paths

    for path in paths:
        [bitmap] = bitmaps_from_paths([path], invert=invert)
        if not isinstance(bitmap, np.ndarray):
            yield View(path, error=str(bitmap))
            continue
        grid = block_counts(pack(bitmap[None]))[0]
        probabilities = model.predict_proba(grid.reshape(1, 64))[0]
        yield View(path, bitmap, grid, probabilities)


def save_views(
    folder: str | os.PathLike[str], name: str, bitmap: np.ndarray, grid: np.ndarray
) -> list[Path]:
    """Write an image's 32x32 bitmap and 8x8 grid as ``STEM_32x32.png`` and ``STEM_8x8.png``.

    Nothing is ever overwritten and no link is followed (see :func:`save_new_pictures`).

    Parameters
    ----------
    folder : path-like
        Where to write (made if missing).
    name : str
        The image's path; its stem names the files.
    bitmap, grid : numpy.ndarray
        bool ``(32, 32)`` and ``(8, 8)`` values 0..16.

    Returns
    -------
    list of pathlib.Path
        The two files written.
    """
    from PIL import Image

    views = {
        "32x32": Image.fromarray(np.where(bitmap, 0, 255).astype(np.uint8)),
        "8x8": Image.fromarray((255 - grid * 255 // 16).astype(np.uint8)),
    }
    big = {view: img.resize((256, 256), Image.Resampling.NEAREST) for view, img in views.items()}
    return save_new_pictures(folder, name, big)


def save_new_pictures(
    folder: str | os.PathLike[str], name: str, pictures: dict[str, Any]
) -> list[Path]:
    """Write each picture as ``STEM_KEY.png`` in `folder`, never over anything.

    No link is followed: when any of the names is taken (by a file, a folder or a link
    planted there), the stem becomes ``STEM-2``, ``STEM-3``, ...

    Parameters
    ----------
    folder : path-like
        Where to write (made if missing).
    name : str
        The image's path; its stem names the files.
    pictures : dict of str to PIL.Image.Image
        The pictures, by the suffix of their names.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of `pictures`.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(name).stem
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for number in itertools.count(1):
        base = stem if number == 1 else f"{stem}-{number}"
        paths = [out / f"{base}_{key}.png" for key in pictures]
        if any(os.path.lexists(p) for p in paths):
            continue
        try:
            fds = [os.open(p, flags, 0o666) for p in paths]
        except FileExistsError:  # taken since the check: try the next stem
            continue
        for fd, img in zip(fds, pictures.values(), strict=True):
            with open(fd, "wb") as fh:
                img.save(fh, format="PNG")
        return paths
    raise AssertionError("unreachable")  # pragma: no cover


def evaluate_folder(
    root: str | os.PathLike[str], model: Model, invert: bool | None = None, *, jobs: int = 1
) -> tuple[np.ndarray, np.ndarray, list[Result]]:
    """Classify a labelled folder (``root/<digit>/<file>``), with `jobs` worker processes.

    Returns
    -------
    y_true, y_pred, results
        ``y_pred`` is -1 where an image could not be converted.
    """
    from digitcli.batch import classify_paths
    from digitcli.datasets import iter_labelled_images

    items = list(iter_labelled_images(root))
    results = list(classify_paths([p for p, _ in items], model, invert=invert, jobs=jobs))
    y_true = np.array([d for _, d in items], dtype=np.int64)
    y_pred = np.array([-1 if r.digit is None else r.digit for r in results], dtype=np.int64)
    return y_true, y_pred, results
