"""Classification metrics (numpy only), the optdigits CSV reader, and their rich rendering."""

from __future__ import annotations

import csv
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from digitcli.errors import DataError
from digitcli.model import N_CLASSES

if TYPE_CHECKING:
    from rich.console import RenderableType


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


def load_optdigits_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read the UCI optdigits format: 64 integers 0..16 then the label, comma separated.

    A header line (a first line that is not all numbers) and blank lines are skipped; a
    UTF-8 byte-order mark is ignored.

    Parameters
    ----------
    path : str or path-like
        The CSV file (``optdigits.tes``, ``optdigits.tra`` or the same layout).

    Returns
    -------
    X, y : numpy.ndarray
        ``(n, 64)`` float64 and ``(n,)`` int64.

    Raises
    ------
    DataError
        Naming the first bad line.
    """
    rows: list[list[int]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for lineno, fields in enumerate(csv.reader(fh), start=1):
                if not fields or all(not f.strip() for f in fields):
                    continue
                try:
                    values = [int(f) for f in fields]
                except ValueError:
                    if lineno == 1:
                        continue  # a header
                    raise DataError(f"{path}, line {lineno}: not all integers") from None
                if len(values) != 65:
                    raise DataError(
                        f"{path}, line {lineno}: {len(values)} values, expected 64 features "
                        "and a label"
                    )
                if min(values[:64]) < 0 or max(values[:64]) > 16:
                    raise DataError(f"{path}, line {lineno}: feature values must be 0..16")
                if not 0 <= values[64] <= 9:
                    raise DataError(f"{path}, line {lineno}: label {values[64]} is not a digit")
                rows.append(values)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text CSV file") from None
    if not rows:
        raise DataError(f"{path} holds no data rows")
    data = np.asarray(rows, dtype=np.int64)
    return data[:, :64].astype(np.float64), data[:, 64]


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
        cells.add_row(
            *(
                Text(f"{v:>3}", style=f"black on grey{min(100, 35 + round(v * 65 / 16))}")
                if v
                else Text("  .", style="grey50")
                for v in row
            )
        )
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


def error_sheet(
    entries: list[tuple[str, int, int, np.ndarray | None]], path: str | os.PathLike[str]
) -> None:
    """Write a contact sheet of misread images: original, 8x8 grid, true and predicted digit.

    Parameters
    ----------
    entries : list of (image path, true digit, predicted digit or -1, 8x8 grid or None)
        The misread images.
    path : path-like
        The PNG to write.
    """
    from PIL import Image, ImageDraw, ImageOps

    from digitcli.errors import ImageError
    from digitcli.imaging import open_image

    cell, cols = 72, 4
    width = cell * 2 + 8
    rows = max(1, (len(entries) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * (width + 12), rows * (cell + 22)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image_path, truth, predicted, grid) in enumerate(entries):
        x, y = (i % cols) * (width + 12), (i // cols) * (cell + 22)
        try:
            original = ImageOps.pad(
                open_image(image_path).convert("RGB"), (cell, cell), color="white"
            )
        except ImageError:
            original = Image.new("RGB", (cell, cell), "lightgrey")
        sheet.paste(original, (x, y))
        if grid is not None:
            g = Image.fromarray(np.clip(255 - grid * 255 / 16, 0, 255).astype(np.uint8))
            sheet.paste(
                g.resize((cell, cell), Image.Resampling.NEAREST).convert("RGB"), (x + cell + 8, y)
            )
        said = "none" if predicted < 0 else str(predicted)
        draw.text((x, y + cell + 4), f"true {truth}  read {said}", fill="black")
    sheet.save(path, format="PNG")
