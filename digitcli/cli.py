"""The ``digitcli`` command line: parse options, call the core, format, map errors.

Exit codes: 0 fine, 1 some input failed or a runtime error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import glob
import json
import math
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from digitcli import model as model_io
from digitcli import recipe as recipes
from digitcli.errors import DigitcliError
from digitcli.recipe import DEFAULT_RECIPE, HOLDOUT_IMAGES, Recipe

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class DigitcliGroup(click.Group):
    """A click group that turns the core's errors into one-line messages and Ctrl-C into 130."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, mapping DigitcliError to exit 1 and Ctrl-C to exit 130."""
        try:
            return super().invoke(ctx)
        except DigitcliError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click ends quietly on a closed pipe
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None
        except KeyboardInterrupt as exc:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(getattr(exc, "code", 130)) from None


class HiddenLayers(click.ParamType):
    """Comma-separated positive layer sizes, e.g. ``256`` or ``256,128``."""

    name = "SIZES"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        """Parse ``"256,128"`` into ``(256, 128)``."""
        try:
            sizes = tuple(int(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)
        if min(sizes) < 1:
            self.fail(f"{value!r}: layer sizes must be positive", param, ctx)
        return sizes


class FiniteFloatRange(click.FloatRange):
    """A ``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which it lets through)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        """Parse and range-check `value`, then refuse non-finite numbers."""
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail("must be a finite number", param, ctx)
        return number


def _model_option(f: Any) -> Any:
    return click.option(
        "--model",
        "model_path",
        metavar="PATH",
        envvar=model_io.ENV_VAR,
        show_envvar=True,
        help="Model file to use (default: the model shipped with digitcli).",
    )(f)


def _invert_option(f: Any) -> Any:
    return click.option(
        "--invert/--no-invert",
        default=None,
        help="Force light-on-dark (--invert) or dark-on-light (--no-invert) images; "
        "detected per image by default.",
    )(f)


def _load_model(path: str | None) -> model_io.Model:
    try:
        return model_io.load(model_io.resolve_model_path(path))
    except DigitcliError as exc:
        source = click.get_current_context().get_parameter_source("model_path")
        if source is click.core.ParameterSource.ENVIRONMENT:
            raise type(exc)(f"{exc} (from ${model_io.ENV_VAR})") from None
        raise


def _jobs_option(what: str) -> Any:
    return click.option(
        "-j",
        "--jobs",
        type=click.IntRange(min=-1),
        default=0,
        help=f"Worker processes for {what} (0 or -1, the default: all cores).",
    )


def _scheduler_option(f: Any) -> Any:
    return click.option(
        "--scheduler",
        metavar="ADDRESS",
        help="Run the work on this Dask cluster, e.g. tcp://host:8786 (needs "
        "digitcli[dask]; -j is then the cluster's). Default: Dask's own setting, "
        "$DASK_SCHEDULER_ADDRESS.",
    )(f)


def _cluster(address: str | None) -> Any:
    """The context in which the work runs on a Dask cluster (:func:`parallel.scheduler`)."""
    from digitcli.parallel import scheduler

    return scheduler(address)


def _cores(jobs: int) -> int:
    """``-j``: a count of workers, where 0 and -1 mean every core this process may use.

    More workers than cores would only wait for each other: -j is capped at the cores.
    """
    from digitcli.parallel import cores

    return min(jobs, cores()) if jobs > 0 else cores()


@click.group(cls=DigitcliGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option()
def cli() -> None:
    """Read handwritten digits from image files.

    \b
    Examples:
      digitcli classify scans/ -o predictions.csv
      digitcli show photo.jpg
      digitcli eval
      digitcli train --out my-model.npz
    """


def _batch_options(what: str) -> Any:
    """The options that classify and read share: inputs, output, workers, model, polarity."""

    def apply(f: Any) -> Any:
        for option in reversed(
            [
                click.argument("inputs", nargs=-1, type=click.Path(path_type=str, readable=False)),
                click.option(
                    "-o",
                    "--output",
                    default="-",
                    metavar="FILE",
                    help="Where to write the rows ('-' = stdout, the default).",
                ),
                click.option(
                    "--format",
                    "fmt",
                    type=click.Choice(["csv", "jsonl"], case_sensitive=False),
                    default=None,
                    help="CSV with a header, or one JSON object per line (default: jsonl for "
                    "an -o ending in .jsonl, else csv).",
                ),
                click.option(
                    "--min-confidence",
                    type=FiniteFloatRange(0, 1),
                    metavar="P",
                    help="Flag rows whose confidence is below P ('low confidence' in the flag "
                    f"column; the {what} is kept), so scripts can send them to a person.",
                ),
                click.option(
                    "--files-from",
                    type=click.File("r", encoding="utf-8", errors="surrogateescape", lazy=False),
                    metavar="FILE",
                    help="Also read paths from FILE, one per line ('-' = stdin).",
                ),
                click.option(
                    "-0",
                    "--null",
                    is_flag=True,
                    help="--files-from separates paths by NUL (find -print0).",
                ),
                _jobs_option("the conversion"),
                _scheduler_option,
                _model_option,
                _invert_option,
                click.option(
                    "-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr."
                ),
            ]
        ):
            f = option(f)
        return f

    return apply


@dataclasses.dataclass(frozen=True)
class _Batch:
    """What classify and read were asked, parsed alike."""

    inputs: tuple[str, ...]
    output: str
    fmt: str
    min_confidence: float | None
    files_from: Any
    null: bool
    jobs: int
    scheduler: str | None
    model_path: str | None
    invert: bool | None
    quiet: bool


def _run_batches(
    batch: _Batch,
    verb: tuple[str, str],
    start: Any,
    make_writer: Any,
) -> None:
    """Walk the inputs, run `start`'s batches, write rows, summarise, exit.

    `start(paths, model, invert=, jobs=, min_confidence=)` gives the batches of results
    (:func:`digitcli.batch.classify_batches`, :func:`digitcli.reading.read_batches`).

    `verb` is the progress bar's word and the summary's (``classifying``, ``classified``).
    Each result has an ``error`` (empty when read) and a ``flag``.
    """
    import itertools

    from digitcli.batch import WalkStats, iter_inputs, read_path_list

    inputs, files_from = batch.inputs, batch.files_from
    if not inputs and files_from is None:
        raise click.UsageError("give image files or folders, or --files-from")
    if batch.null and files_from is None:
        raise click.UsageError("-0/--null goes with --files-from")
    fmt = (batch.fmt or ("jsonl" if batch.output.lower().endswith(".jsonl") else "csv")).lower()
    _refuse_output_among_inputs(batch.output, inputs)
    model = _load_model(batch.model_path)
    stats = WalkStats()

    def sources() -> Any:
        sep = "\0" if batch.null else "\n"
        listed = read_path_list(files_from, sep=sep) if files_from else ()
        return itertools.chain(inputs, listed)

    for missing in (p for p in inputs if not os.path.lexists(p) and not glob.has_magic(p)):
        click.echo(f"not found: {missing}", err=True)
    started = time.perf_counter()
    done = failed = unsure = 0
    bar = not batch.quiet and not (batch.output == "-" and sys.stdout.isatty())
    with (
        _cluster(batch.scheduler),
        _open_output(batch.output) as stream,
        _files_progress(bar, verb[0], inputs, files_from) as tick,
    ):
        writer = make_writer(fmt, stream)
        batches = start(
            iter_inputs(sources(), stats),
            model,
            invert=batch.invert,
            jobs=_cores(batch.jobs),
            min_confidence=batch.min_confidence,
        )
        try:
            for results in batches:
                for result in results:
                    writer.write(result)
                    done += 1
                    failed += bool(result.error)
                    unsure += "low confidence" in result.flag
                writer.flush()  # rows reach the reader as each batch is done
                tick(len(results))
        finally:
            batches.close()  # stops the workers at once when the run ends early
    if not batch.quiet:
        elapsed = time.perf_counter() - started
        parts = [f"{done - failed} {verb[1]}", f"{failed} failed"]
        if stats.skipped:
            parts.append(f"{stats.skipped} skipped")
        if batch.min_confidence is not None:
            parts.append(f"{unsure} below --min-confidence")
        rate = done / elapsed if elapsed > 0 else 0.0
        click.echo(f"{', '.join(parts)} in {elapsed:.2f} s ({rate:.0f} images/s)", err=True)
    if not done:
        named = ", ".join(p for p in inputs if os.path.isdir(p)) or "the inputs"
        raise click.ClickException(f"no images found in {named}")
    if failed:
        click.get_current_context().exit(1)


@cli.command()
@_batch_options("digit")
@click.option("--probabilities", is_flag=True, help="Add each digit's probability (p0..p9).")
def classify(probabilities: bool, **options: Any) -> None:
    """Classify image files, folders and glob patterns; write one row per image.

    Folders are searched recursively (sorted; hidden and non-image files skipped).
    Rows are written as they are done, in input order. Columns: path, digit,
    confidence, error (empty when the image was read), flag. A file that cannot be
    read is a row with its error, and the run goes on; the exit code is then 1. An
    image that holds several digits side by side is flagged 'several digits: use read'.

    \b
    Examples:
      digitcli classify photo.jpg
      digitcli classify scans/ -o predictions.csv
      digitcli classify 'scans/**/*.png' --format jsonl --min-confidence 0.9
      find scans -name '*.jpg' | digitcli classify --files-from - -o out.csv
    """
    from digitcli.batch import WRITERS, classify_batches

    _run_batches(
        _Batch(**options),
        ("classifying", "classified"),
        classify_batches,
        lambda fmt, stream: WRITERS[fmt](stream, probabilities),
    )


@cli.command()
@_batch_options("number")
@click.option(
    "--details",
    is_flag=True,
    help="Add each character's value, probability and box (top, bottom, left, right).",
)
@click.option(
    "--keep-separators",
    is_flag=True,
    help="Keep thousands separators and decimal points (. , ') in the number: 10.359.",
)
def read(details: bool, keep_separators: bool, **options: Any) -> None:
    """Read a handwritten number (an amount, a code) in each image; one row per image.

    Inputs are taken as classify takes them. Columns: path, number (the digits in
    reading order, empty when none were found), confidence (that the whole number is
    right), digits (how many), error, flag. Separators, dashes, '=' and guide lines
    are not digits and are left out. One line of digits is read per image (several
    lines are not supported: crop each line).

    \b
    Examples:
      digitcli read amounts/ -o numbers.csv
      digitcli read cheque.jpg --details --format jsonl
      digitcli read 'scans/*.png' --keep-separators --min-confidence 0.8
    """
    from digitcli.reading import NUMBER_WRITERS, read_batches

    _run_batches(
        _Batch(**options),
        ("reading", "read"),
        functools.partial(read_batches, keep_separators=keep_separators),
        lambda fmt, stream: NUMBER_WRITERS[fmt](stream, details),
    )


def _is_inside(path: str, folder: str) -> bool:
    """Whether `path` lies inside `folder`, links resolved."""
    return os.path.realpath(path).startswith(os.path.realpath(folder).rstrip(os.sep) + os.sep)


def _refuse_output_among_inputs(output: str, inputs: tuple[str, ...]) -> None:
    """-o must never overwrite an image.

    Not an input, not one an input folder holds, nor any file that is an image (so none that
    a pattern, --files-from or a hard link leads to).
    """
    if output == "-":
        return
    from digitcli.batch import is_image_name, looks_like_image

    if looks_like_image(output):
        raise click.UsageError(f"-o {output} is an image: digitcli will not overwrite it")
    for item in inputs:
        inside = os.path.isdir(item) and _is_inside(output, item)
        same = os.path.realpath(output) == os.path.realpath(item)
        if same or (inside and is_image_name(os.path.basename(os.path.realpath(output)))):
            raise click.UsageError(f"-o {output} would overwrite the input {item}")


@contextlib.contextmanager
def _files_progress(
    wanted: bool, verb: str, inputs: tuple[str, ...], files_from: Any
) -> Iterator[Any]:
    """Yield ``tick(n)``: advances a rich progress bar when wanted and stderr is a terminal.

    The bar is redrawn by the ticks (at most ten times a second), not by a thread of its
    own: with no other thread running, the conversion can fork its workers (fast start).
    """
    if not wanted or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from digitcli.batch import iter_inputs

    class _RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:>6.0f} images/s")

    total = None
    if files_from is None:  # count first (names only) so that the bar has an ETA
        total = sum(1 for _ in iter_inputs(inputs))
    columns = (
        TextColumn(verb),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=Console(stderr=True), transient=True, auto_refresh=False
    ) as bar:
        task = bar.add_task(verb, total=total)
        last = 0.0

        def tick(n: int) -> None:
            nonlocal last
            bar.advance(task, n)
            if time.monotonic() - last >= 0.1:
                last = time.monotonic()
                bar.refresh()

        yield tick


@contextlib.contextmanager
def _open_output(output: str) -> Iterator[Any]:
    """The rows' stream: stdout, or FILE locked against a second run writing it too.

    Both write UTF-8, and a file name that is not UTF-8 as its own bytes (surrogateescape),
    whatever the locale. A closed stdout (``| head``) ends the run quietly.
    """
    if output == "-":
        sys.stdout.reconfigure(encoding="utf-8", errors="surrogateescape", newline="")
        try:
            yield sys.stdout
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_closed_stdout()
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {output}: {exc.strerror or exc}", param_hint="'-o'"
        ) from None
    with open(fd, "w", newline="", encoding="utf-8", errors="surrogateescape") as stream:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # a pipe or device is written as it is
            _lock(stream, output)
            stream.truncate(0)  # only now: a run that finds the file locked leaves it whole
        yield stream


def _lock(stream: Any, output: str) -> None:
    try:
        import fcntl
    except ImportError:  # not on this platform: no lock
        return
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise click.ClickException(f"{output} is being written by another digitcli run") from None


def _quiet_closed_stdout() -> None:
    """The reader of stdout has gone (``| head``): end quietly, exit 0, as ripgrep does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit is quiet
    raise click.exceptions.Exit(0)


@cli.command("eval")
@_model_option
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    help="Evaluate on an optdigits-format CSV (64 values 0..16, then the label).",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False),
    help="Evaluate on a labelled image folder laid out as DIR/<digit>/<file>.",
)
@click.option(
    "--numbers",
    type=click.Path(exists=True, dir_okay=False),
    metavar="LABELS.csv",
    help="Evaluate `read` on whole numbers: a CSV of file,number (files relative to it).",
)
@_invert_option
@click.option(
    "--errors",
    "errors_png",
    type=click.Path(dir_okay=False, writable=True),
    help="With --images or --numbers: write a contact sheet of the misread images to this PNG.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
@_jobs_option("converting --images")
@_scheduler_option
def evaluate(
    model_path: str | None,
    data: str | None,
    images: str | None,
    numbers: str | None,
    invert: bool | None,
    errors_png: str | None,
    as_json: bool,
    jobs: int,
    scheduler: str | None,
) -> None:
    """Measure a model: accuracy, precision/recall/F1 per digit, confusion matrix.

    By default on the held-out 20% of scikit-learn's Digits recorded in the model.

    \b
    Examples:
      digitcli eval
      digitcli eval --json
      digitcli eval --data optdigits.tes
      digitcli eval --images sample_images --errors misread.png
      digitcli eval --numbers amounts/labels.csv --errors wrong.png
    """
    from digitcli.datasets import load_optdigits_csv
    from digitcli.evaluation import compute_metrics

    if sum(map(bool, (data, images, numbers))) > 1:
        raise click.UsageError("use one of --data, --images and --numbers")
    if errors_png and not (images or numbers):
        raise click.UsageError("--errors needs --images or --numbers")
    if scheduler and not (images or numbers):  # the Digits split and a CSV: scored at once
        raise click.UsageError("--scheduler goes with --images or --numbers")
    if errors_png and images and _is_inside(errors_png, images):
        raise click.UsageError(f"--errors {errors_png} is inside the --images folder {images}")
    model = _load_model(model_path)
    if numbers:
        _evaluate_numbers(numbers, model, invert, errors_png, as_json, jobs, scheduler)
        return
    if images:
        from digitcli.evaluation import evaluate_folder

        source = f"images in {images}"
        with _cluster(scheduler):
            y_true, y_pred, results = evaluate_folder(images, model, invert, jobs=_cores(jobs))
        if not len(y_true):
            raise click.ClickException(f"no images found in {images}")
        if errors_png:
            _write_error_sheet(errors_png, results, y_true, y_pred)
    else:
        if data:
            source = f"optdigits CSV {data}"
            X, y_true = load_optdigits_csv(data)
        else:
            from digitcli.datasets import digits_test_split

            X, y_true = digits_test_split(model.test_index)
            source = "Digits test split (held out in training)"
        y_pred, _ = model.predict(X)
    metrics = compute_metrics(y_true, y_pred)
    recorded = {
        key: model.metadata[key]
        for key in ("cv", "test_accuracy", "validation", "sources", "recipe", "seed", "created")
        if key in model.metadata
    }
    if as_json:
        payload = {"source": source, **metrics, "model": recorded}
        click.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape

    from digitcli.evaluation import render_metrics

    notes = []
    if "cv" in recorded:
        cv = recorded["cv"]
        per_fold = cv.get("networks_per_fold", 1)
        nets = f"{per_fold} network{'s' if per_fold != 1 else ''}"
        nets += " and the kernel member per fold" if "kernel" in model.metadata else " per fold"
        notes.append(f"recorded: {cv['folds']}-fold CV {cv['mean']:.4f} ({nets})")
    if "test_accuracy" in recorded:
        notes.append(f"recorded: test split {recorded['test_accuracy']:.4f}")
    for v in recorded.get("validation", []):
        notes.append(f"recorded: {v['accuracy']:.4f} on {v['n']} images in {escape(v['images'])}")
    for line in _recorded_holdouts(model.metadata):
        notes.append(escape(line))
    console = Console()
    for table in render_metrics(metrics, source, notes):
        console.print(table)


def _evaluate_numbers(
    labels: str,
    model: model_io.Model,
    invert: bool | None,
    errors_png: str | None,
    as_json: bool,
    jobs: int,
    scheduler: str | None,
) -> None:
    """``eval --numbers``: read the labelled images, print the metrics, draw the errors."""
    from digitcli.number_eval import (
        digits_read,
        evaluate_numbers,
        number_error_sheet,
        number_metrics,
        render_number_metrics,
    )

    with _cluster(scheduler):
        labelled, results = evaluate_numbers(labels, model, invert=invert, jobs=_cores(jobs))
    reads = [digits_read(r) for r in results]
    truths = [x.number for x in labelled]
    confidences = [None if r.reading is None else r.reading.confidence for r in results]
    metrics = number_metrics(truths, reads, confidences=confidences)
    failed = sum(bool(r.error) for r in results)
    if errors_png:
        wrong = [
            (x.path, x.number, r)
            for x, r, d in zip(labelled, results, reads, strict=True)
            if d != x.number
        ]
        if not wrong:
            click.echo("no numbers read wrong: no sheet written", err=True)
        else:
            try:
                written = number_error_sheet(wrong, errors_png)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot write {errors_png}: {exc.strerror or exc}"
                ) from None
            click.echo(
                f"{len(wrong)} numbers read wrong drawn in {', '.join(map(str, written))}", err=True
            )
    source = f"numbers in {labels}"
    if as_json:
        click.echo(json.dumps({"source": source, "failed": failed, **metrics}, indent=2))
        return
    from rich.console import Console

    console = Console()
    for table in render_number_metrics(metrics, source):
        console.print(table)
    if failed:
        click.echo(f"{failed} images could not be read (counted as read wrong)", err=True)


def _recorded_holdouts(metadata: dict[str, Any]) -> list[str]:
    """The notes of eval on the held-out part of each folder that train --images fitted.

    The metadata of a model file is not trusted: malformed entries are passed over.
    """
    sources = metadata.get("sources")
    notes = []
    for s in sources if isinstance(sources, list) else []:
        accuracy = s.get("holdout_accuracy") if isinstance(s, dict) else None
        if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
            continue
        n = s.get("n_holdout")
        notes.append(f"recorded: {float(accuracy):.4f} on {n} held-out images of {s.get('path')}")
    return notes


def _write_error_sheet(path: str, results: list[Any], y_true: Any, y_pred: Any) -> None:
    from digitcli.evaluation import error_sheet

    entries = [
        (
            result.path,
            int(truth),
            int(predicted),
            None if result.features is None else result.features.reshape(8, 8),
            result.confidence,
        )
        for result, truth, predicted in zip(results, y_true, y_pred, strict=True)
        if truth != predicted
    ]
    if not entries:
        click.echo("no misread images: no sheet written", err=True)
        return
    try:
        written = error_sheet(entries, path)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {exc.filename or path}: {exc.strerror or exc}"
        ) from None
    names = ", ".join(str(p) for p in written)
    click.echo(f"{len(entries)} misread images drawn in {names}", err=True)


#: Terminal columns that show needs to draw the 32x32 bitmap beside the grid.
BITMAP_COLUMNS = 96


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=str, readable=False))
@_model_option
@_invert_option
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False, writable=True),
    help="Also write each image's normalised 32x32 bitmap and 8x8 grid as PNGs here "
    "(never over an existing file: same-named images get -2, -3, ...).",
)
@click.option(
    "--pieces",
    is_flag=True,
    help="Read each image as a number (as `read` does) and show its cuts: the image with "
    "numbered pieces, then each piece's grid and reading. With --save, the image with the "
    "boxes drawn is written as STEM_pieces.png.",
)
@click.option(
    "--bitmap/--no-bitmap",
    default=None,
    help="Draw the normalised 32x32 bitmap beside the grid. Default: when the terminal is "
    f"at least {BITMAP_COLUMNS} columns wide.",
)
def show(
    images: tuple[str, ...],
    model_path: str | None,
    invert: bool | None,
    save_dir: str | None,
    pieces: bool,
    bitmap: bool | None,
) -> None:
    """Show what the model sees: each image's 8x8 grid, prediction and top 3.

    IMAGES are files, folders and glob patterns, as for classify.

    The grid is the image after the conversion (values 0..16, as in scikit-learn's
    Digits); it tells why an image was read as it was. Beside it, the 32x32 bitmap the
    grid counts (two rows per line) shows a hollowed or broken stroke at a glance.

    With --pieces, each image is read as a number: the picture shows its ink with each
    piece numbered under it, then each piece's grid and reading.

    \b
    Examples:
      digitcli show photo.jpg
      digitcli show scans/*.png --bitmap --save debug/
      digitcli show --pieces cheque.jpg --save debug/
    """
    from rich.console import Console

    from digitcli.batch import iter_inputs
    from digitcli.evaluation import render_grid, save_views, views

    model = _load_model(model_path)
    console = Console()
    if pieces:
        _show_pieces(iter_inputs(images), model, invert, save_dir, console)
        return
    if bitmap is None:
        bitmap = console.width >= BITMAP_COLUMNS
    failed = 0
    for view in views(iter_inputs(images), model, invert=invert):
        if view.error:
            failed += 1
            Console(stderr=True).print(render_grid(view.path, np.zeros((8, 8)), None, view.error))
            continue
        drawn = view.bitmap if bitmap else None
        console.print(render_grid(view.path, view.grid, view.probabilities, bitmap=drawn))
        if save_dir:
            save_views(save_dir, view.path, view.bitmap, view.grid)
    if failed:
        click.get_current_context().exit(1)


def _show_pieces(
    paths: Any, model: model_io.Model, invert: bool | None, save_dir: str | None, console: Any
) -> None:
    """``show --pieces``: each image's cuts, and each piece's grid and reading."""
    from rich.console import Console
    from rich.markup import escape

    from digitcli.conversion.decode import open_image
    from digitcli.evaluation import render_grid, save_new_pictures
    from digitcli.number_eval import draw_reading, ink_picture
    from digitcli.reading import read_batches

    failed = 0
    for batch in read_batches(paths, model, invert=invert, batch_size=1):
        for result in batch:
            if result.error:
                failed += 1
                Console(stderr=True).print(f"{escape(result.path)}: {escape(result.error)}")
                continue
            reading = result.reading
            try:
                image = open_image(result.path)
            except DigitcliError as exc:  # changed since it was read
                failed += 1
                Console(stderr=True).print(f"{escape(result.path)}: {escape(str(exc))}")
                continue
            console.print(
                f"[bold]{escape(result.path)}[/]: read [bold]{reading.number or '(nothing)'}[/] "
                f"({reading.digits} digits, confidence {reading.confidence:.4f})"
            )
            console.print(ink_picture(image, reading.glyphs), highlight=False)
            for i, glyph in enumerate(reading.glyphs, start=1):
                top, bottom, left, right = glyph.box
                title = f"piece {i}: rows {top}-{bottom}, columns {left}-{right}"
                if glyph.features is None:
                    console.print(f"{title}: separator {glyph.text!r}")
                    continue
                grid = glyph.features.reshape(8, 8)
                console.print(render_grid(title, grid, glyph.probabilities))
            if save_dir:
                picture = draw_reading(image, reading.glyphs, height=128)
                [written] = save_new_pictures(save_dir, result.path, {"pieces": picture})
                click.echo(f"wrote {written}", err=True)
    if failed:
        click.get_current_context().exit(1)


@cli.command()
@click.option(
    "--hidden-layers",
    type=HiddenLayers(),
    default=",".join(str(n) for n in DEFAULT_RECIPE.hidden_layers),
    show_default=True,
    help="Hidden layer sizes, comma separated.",
)
@click.option(
    "--alpha",
    type=FiniteFloatRange(min=0),
    default=DEFAULT_RECIPE.alpha,
    show_default=True,
    help="L2 penalty.",
)
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=DEFAULT_RECIPE.max_iter,
    show_default=True,
    help="Maximum training epochs.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_RECIPE.batch_size,
    show_default=True,
    help="Minibatch size of Adam.",
)
@click.option(
    "--learning-rate",
    type=FiniteFloatRange(min=0, min_open=True),
    default=DEFAULT_RECIPE.learning_rate,
    show_default=True,
    help="Initial step size of Adam.",
)
@click.option(
    "--anneal-epochs",
    type=click.IntRange(min=0),
    default=DEFAULT_RECIPE.anneal_epochs,
    show_default=True,
    help="Epochs at a tenth of the learning rate after --max-iter (0 = none).",
)
@click.option(
    "--originals",
    type=click.IntRange(min=1),
    default=DEFAULT_RECIPE.originals,
    show_default=True,
    help="Times each original Digits image is in the training data (distorted copies once).",
)
@click.option(
    "--kernel-weight",
    type=FiniteFloatRange(0, 1, max_open=True),
    default=DEFAULT_RECIPE.kernel_weight,
    show_default=True,
    help="Share of the kernel member (RBF logistic regression on the original images) "
    "in the averaged probabilities (0 = networks only).",
)
@click.option(
    "--augment",
    type=click.IntRange(min=0),
    default=DEFAULT_RECIPE.augment,
    show_default=True,
    help="Distorted copies added per training image.",
)
@click.option(
    "--ensemble",
    type=click.IntRange(min=1),
    default=DEFAULT_RECIPE.ensemble,
    show_default=True,
    help="Networks (different seeds) whose probabilities are averaged.",
)
@click.option(
    "--synthetic",
    type=click.IntRange(min=0, max=10_000),
    default=DEFAULT_RECIPE.synthetic,
    show_default=True,
    help="Synthetic pen-stroke glyphs per digit added to the training data (0 = none).",
)
@click.option(
    "--pieces",
    type=click.IntRange(min=0, max=100_000),
    default=DEFAULT_RECIPE.pieces,
    show_default=True,
    help="Synthetic numbers whose digits, cut as `read` cuts them, are added like the "
    "glyphs (0 = none).",
)
@click.option(
    "--glyph-weight",
    type=FiniteFloatRange(min=0, min_open=True),
    default=DEFAULT_RECIPE.glyph_weight,
    show_default=True,
    help="Weight in the loss of each glyph and its copy (a Digits image weighs 1).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of weights, augmentation and CV folds.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2, max=20),
    default=10,
    show_default=True,
    help="Cross-validation folds on the training part.",
)
@click.option(
    "--cv-ensemble",
    is_flag=True,
    help="Cross-validate the whole ensemble in every fold, not one network "
    "(--ensemble times the CV work).",
)
@click.option(
    "--fast",
    is_flag=True,
    help="A small recipe for trying things out (128 hidden, augment 1, one network, "
    "50 synthetic, 3 folds; about 10 s); options given explicitly still apply.",
)
@click.option(
    "--validate-images",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Also measure the model on a labelled image folder DIR/<digit>/<file> "
    "(repeatable; measured only, never fitted).",
)
@click.option(
    "--images",
    multiple=True,
    metavar="DIR",
    help="Add a labelled image folder DIR/<digit>/<file> (say your writers' own digits) "
    "to the training data, through the classify conversion (repeatable).",
)
@click.option(
    "--images-weight",
    type=FiniteFloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    metavar="W",
    help="Weight in the loss of each --images image (a Digits image weighs 1).",
)
@click.option(
    "--holdout-images",
    type=FiniteFloatRange(0, 1, max_open=True),
    default=HOLDOUT_IMAGES,
    show_default=True,
    metavar="F",
    help="Share of each --images folder kept out of fitting (per digit) and scored, "
    "beside the shipped model's score on it (0 = fit them all).",
)
@click.option(
    "--search",
    is_flag=True,
    help="Choose layers, alpha, augmentation and ensemble size by cross-validated grid search.",
)
@_jobs_option("cross-validation, search, the ensemble and converting --images")
@_scheduler_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default="model.npz",
    show_default=True,
    help="Where to save the model.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def train(
    hidden_layers: tuple[int, ...],
    alpha: float,
    max_iter: int,
    augment: int,
    ensemble: int,
    synthetic: int,
    pieces: int,
    glyph_weight: float,
    batch_size: int,
    learning_rate: float,
    anneal_epochs: int,
    originals: int,
    kernel_weight: float,
    seed: int,
    folds: int,
    cv_ensemble: bool,
    fast: bool,
    validate_images: tuple[str, ...],
    images: tuple[str, ...],
    images_weight: float,
    holdout_images: float,
    search: bool,
    jobs: int,
    scheduler: str | None,
    out: str,
    quiet: bool,
) -> None:
    """Fit the model (MLPs and a kernel member) on scikit-learn's Digits and save it.

    Uses a stratified 80/20 split (recorded in the model); the 20% test part is only
    scored, never fitted or used to choose settings. Prints CV and test accuracy.

    --images adds your own labelled digits to the training data; a --holdout-images part
    of each folder is only scored, against the shipped model's score on the same images.

    \b
    Examples:
      digitcli train
      digitcli train --hidden-layers 256,128 --alpha 0.01 --out big.npz
      digitcli train --fast --out quick.npz
      digitcli train --validate-images my_digits/
      digitcli train --images form_digits/ --images-weight 2
      digitcli train --search --jobs 2
    """
    from digitcli import datasets, training

    _check_writable(out)
    # Read the folders first: a missing or empty one fails now, not after the training.
    image_sets = [datasets.labelled_folder(d, jobs=_cores(jobs)) for d in images]
    baseline = None
    if image_sets and holdout_images > 0:
        with contextlib.suppress(DigitcliError):  # no shipped model: no "before" figure
            baseline = model_io.load(model_io.default_model_path())
    # Every Recipe field is an option of the same name.
    ctx = click.get_current_context()
    fields = [field.name for field in dataclasses.fields(Recipe)]
    recipe = Recipe(**{name: ctx.params[name] for name in fields})
    if fast:
        given = {
            name
            for name in (*fields, "folds")
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        }
        recipe, folds = recipes.with_fast_preset(recipe, folds, given=given)
    with _cluster(scheduler), _progress(quiet) as progress:
        result = training.train(
            recipe,
            seed=seed,
            folds=folds,
            cv_ensemble=cv_ensemble,
            n_jobs=_cores(jobs),
            search=recipes.SEARCH_GRID if search else None,
            validate_images=validate_images,
            progress=progress,
            images=image_sets,
            images_weight=images_weight,
            holdout_images=holdout_images,
            baseline=baseline,
        )
    path = model_io.save(result.model, out)
    if quiet:
        return
    if result.search_table:
        _print_search_table(result.search_table, result.recipe)
    cv = result.cv_scores
    mean = sum(cv) / len(cv)
    r = result.recipe
    click.echo(
        f"recipe:        {r.describe()} originals={r.originals} "
        f"pieces={r.pieces} glyph_weight={r.glyph_weight:g} max_iter={r.max_iter} "
        f"anneal_epochs={r.anneal_epochs} batch_size={r.batch_size} "
        f"learning_rate={r.learning_rate:g} kernel_weight={r.kernel_weight:g}",
        err=True,
    )
    per_fold = result.model.metadata["cv"]["networks_per_fold"]
    nets = "one network" if per_fold == 1 else f"{per_fold} networks"
    if r.kernel_weight:
        nets += " and the kernel member"
    click.echo(
        f"{folds}-fold CV:    {mean:.4f} (on the 80% training part, {nets} per fold)", err=True
    )
    click.echo(f"test accuracy: {result.test_accuracy:.4f} (held-out 20%)", err=True)
    for v in result.model.metadata.get("validation", []):
        click.echo(f"images:        {v['accuracy']:.4f} on {v['n']} in {v['images']}", err=True)
    for line in _image_source_lines(result.sources):
        click.echo(line, err=True)
    click.echo(f"model saved:   {path}", err=True)


def _image_source_lines(sources: list[dict[str, Any]]) -> list[str]:
    """The summary of each --images folder: what was fitted, held out and scored."""
    lines = []
    for s in sources:
        if s["role"] != "images":
            continue
        unread = f" ({s['skipped']} unreadable, skipped)" if s["skipped"] else ""
        lines.append(
            f"added:         {s['n']} images from {s['path']}{unread}: {s['n_fit']} fitted "
            f"at weight {s['weight']:g}, {s['n_holdout']} held out"
        )
        if "holdout_accuracy" in s:
            before = s.get("baseline_accuracy")
            was = f" (shipped model: {before:.4f})" if before is not None else ""
            lines.append(
                f"held out:      {s['holdout_accuracy']:.4f} on {s['n_holdout']} "
                f"from {s['path']}{was}"
            )
    return lines


def _check_writable(out: str) -> None:
    """Write to --out before hours of training, not after: make its folder, open it."""
    existed = os.path.lexists(out)
    try:
        Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
        with open(out, "ab"):
            pass
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {out}: {exc.strerror or exc}", param_hint="'--out'"
        ) from None
    if not existed:
        os.unlink(out)


def _print_search_table(rows: list[dict[str, Any]], best: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="search (cross-validated on the training part)", title_justify="left")
    table.add_column("recipe")
    table.add_column("CV mean", justify="right")
    table.add_column("CV std", justify="right")
    for row in sorted(rows, key=lambda r: -r["cv_mean"]):
        mark = " *" if row["recipe"] == best.describe() else ""
        table.add_row(row["recipe"] + mark, f"{row['cv_mean']:.4f}", f"{row['cv_std']:.4f}")
    Console(stderr=True).print(table)


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """Yield a ``progress(stage, done, total)`` callback, or None when quiet.

    A rich bar when stderr is a terminal, a line per stage otherwise.
    """
    if quiet:
        yield None
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        seen: set[str] = set()

        def report(stage: str, done: int, total: int) -> None:
            if stage not in seen:
                seen.add(stage)
                unit = "folder" if stage == "validate" else "fit"
                click.echo(f"{stage}: {total} {unit}{'s' if total != 1 else ''}...", err=True)

        yield report
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stopped like Ctrl-C, with the exit code 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.code = 128 + signum


def _stop_on(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def main() -> None:
    """Console-script entry point: SIGTERM and SIGHUP stop a run as Ctrl-C does."""
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop_on)
    cli(prog_name="digitcli")
