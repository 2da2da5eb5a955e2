"""The typer application and error handling for every command.

Shared options live in :mod:`churnlens.cli._options`. Nothing here imports pandas or
the library: ``churnlens --version`` and ``--help`` must start fast.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from churnlens._version import __version__
from churnlens.exceptions import ChurnlensError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

app = typer.Typer(
    name="churnlens",
    help="Predict which customers will stop buying, and measure how many actually stayed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

# Status codes the CLI promises to batch jobs.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_ALERTS = 3  # `monitor` found something to act on (docs/monitoring.md)
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


def stdout() -> Console:
    """Console for results (stdout); wide when piped, so tables are never truncated."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)
    return console


def stderr() -> Console:
    """Console for progress and errors (stderr), so stdout stays parseable.

    Progress lines (``Console.log``) carry the time but not the source line that
    printed them (``_app.py:189`` means nothing to a user).
    """
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, log_path=False)


def handle_errors(func: F) -> F:
    """Give every command the exit status the CLI promises, with one line on stderr.

    A :class:`~churnlens.exceptions.ChurnlensError` (bad input or options) exits 2;
    Ctrl-C or SIGTERM at any phase (including inside a DuckDB query, which turns the
    signal into its own "interrupted" error) exits 130; anything else exits 1 with
    the exception's type and text on one line. No traceback is printed (set
    ``CHURNLENS_DEBUG=1`` to see it). Outputs are written atomically after the work,
    so no failure leaves an output file.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        written = _committed_outputs()
        written.clear()  # this command's outputs only
        with _signals_interrupt() as received:
            try:
                result = func(*args, **kwargs)
                _finished.append(func.__name__)
                return result
            except (typer.Exit, typer.Abort, _USAGE_ERROR):
                raise  # typer's own exits and usage errors keep their codes
            except KeyboardInterrupt:
                _fail(_interrupted(_committed_outputs()), EXIT_INTERRUPTED, prefix="")
            except ChurnlensError as exc:
                if received:
                    _fail(_interrupted(_committed_outputs()), EXIT_INTERRUPTED, prefix="")
                _fail(str(exc), EXIT_BAD_INPUT)
            except Exception as exc:
                if received or _is_interruption(exc):
                    _fail(_interrupted(_committed_outputs()), EXIT_INTERRUPTED, prefix="")
                if os.environ.get(DEBUG_ENV):
                    raise
                _fail(f"unexpected failure ({type(exc).__name__}: {exc}); no output was "
                      f"written. Suggestion: run again with {DEBUG_ENV}=1 to see the "
                      "traceback, and report it if the input looks right.", EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


DEBUG_ENV = "CHURNLENS_DEBUG"
# click's ClickException (typer.BadParameter's base; click is reached through typer):
# usage errors exit 2 with typer's own message.
_USAGE_ERROR: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def _fail(message: str, code: int, *, prefix: str = "error: ") -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    from churnlens._redact import redact_uri_credentials

    # one line, whatever the exception's text holds; no password of a tracking URI
    line = redact_uri_credentials(" ".join(message.split()))
    stderr().print(f"{prefix}{line}", markup=False, highlight=False, emoji=False,
                   soft_wrap=True)
    raise typer.Exit(code) from None


def _committed_outputs() -> collections.deque[Any]:
    """``churnlens._io.COMMITTED`` (outputs renamed into place), without importing
    ``_io`` (and pandas) for commands that never write through it."""
    module = sys.modules.get("churnlens._io")
    empty: collections.deque[Any] = collections.deque()
    return getattr(module, "COMMITTED", empty) if module is not None else empty


def _interrupted(written: collections.deque[Any]) -> str:
    """The line for an interruption: outputs are written whole or not at all, so either
    nothing was written or the files named are complete (the signal came after them)."""
    if not written:
        return "interrupted; no output was written."
    names = ", ".join(str(path) for path in written)
    return f"interrupted after writing {names} (complete); nothing else was written."


def _is_interruption(exc: BaseException) -> bool:
    """DuckDB's error for a query stopped by a signal (a RuntimeError "Query interrupted",
    or ``duckdb.InterruptException``)."""
    text = str(exc).lower()
    return ("query interrupted" in text or
            (type(exc).__module__.startswith("duckdb") and "interrupt" in
             type(exc).__name__.lower()))


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[list[int]]:
    """Turn SIGTERM (a scheduler's kill) and SIGINT into KeyboardInterrupt, and record them.

    The yielded list holds the signals received: an error raised while unwinding from
    one (DuckDB reports a stopped query as its own error) is still an interruption.
    SIGKILL cannot be caught; outputs are written to a temporary name and renamed
    (``churnlens._io.write_table``), so even then no partial output is left.
    """
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (tests calling the app): leave signals alone
        yield received
        return
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Steps:
    """Progress on stderr: a spinner with the current step and a log of finished ones."""

    def __init__(self) -> None:
        self.console = stderr()
        self.status = self.console.status("starting")

    def __enter__(self) -> Steps:
        self.status.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.status.__exit__(*exc)

    def __call__(self, message: str) -> None:
        self.console.log(message, highlight=False)
        self.status.update(message)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_table(title: str, by_model: dict[str, dict[str, Any]], keys: tuple[str, ...]
                  ) -> Table:
    """A table of metrics by model: churnlens first, then the baselines.

    Headers are the metric keys with spaces for underscores, so that a narrow terminal
    stacks a header on several lines instead of cutting it (``predict…``).
    """
    from rich.table import Table

    table = Table(title=title)
    table.add_column("model")
    for key in keys:
        table.add_column(header_text(key), justify="right")
    # churnlens first, then the baselines in their usual order
    order = ("churnlens", "bgnbd", "logistic", "recency")
    names = sorted(by_model, key=lambda n: (order.index(n) if n in order else len(order), n))
    for name in names:
        table.add_row(name, *(_fmt(by_model[name].get(k)) for k in keys))
    return table


def header_text(key: str) -> str:
    """A column key as a header that may wrap between words (``cohort_retention`` ->
    ``cohort retention``)."""
    return str(key).replace("_", " ")


def _is_retention_key(key: str) -> bool:
    return "retention" in key or key.endswith("crr") or "_crr" in key


def print_metrics(console: Console, title: str, by_model: dict[str, dict[str, Any]],
                  keys: tuple[str, ...]) -> None:
    """Print metrics by model as two tables, each fitted to the console's width.

    How well the model ranks and calibrates (AUC, Brier...) in one table; predicted
    vs actual retention (percent) in the other. Each is split further by
    :func:`print_fitted` only if the terminal is too narrow for it.
    """
    ranking = tuple(k for k in keys if not _is_retention_key(k))
    retention = tuple(k for k in keys if _is_retention_key(k))
    groups = [(title, ranking)] if not retention else [
        (f"{title}: ranking and calibration", ranking),
        (f"{title}: retention, predicted vs actual (%)", retention)]
    for group_title, group_keys in groups:
        if group_keys:
            print_fitted(console, metrics_table(group_title, by_model, group_keys))


def print_fitted(console: Console, table: Table, *, key_columns: int = 1) -> None:
    """Print ``table`` so that no header or value is cut: stacked in parts if needed.

    On a terminal, a table wider than the terminal is narrowed first by wrapping
    headers between words (each column keeps at least its longest word or value);
    if even that is too wide, it is printed as several tables, each repeating the
    first ``key_columns`` columns (the model, the period...) and taking as many of
    the other columns as fit. Into a file or a pipe the table is printed whole, at
    its natural width.
    """
    from rich.console import Console as RichConsole
    from rich.measure import Measurement

    wide = console.options.update_width(10_000)
    if not console.is_terminal:
        natural = Measurement.get(console, wide, table)
        RichConsole(file=console.file, soft_wrap=True,
                    width=max(natural.maximum, 80)).print(table)
        return
    ranges = [_column_range(console, column) for column in table.columns]
    width = console.width

    def fits(columns: list[int]) -> bool:
        return sum(ranges[i][0] for i in columns) + _overhead(len(columns)) <= width

    keys = list(range(min(key_columns, len(table.columns))))
    parts: list[list[int]] = []
    current = list(keys)
    for index in range(len(keys), len(table.columns)):
        if len(current) > len(keys) and not fits([*current, index]):
            parts.append(current)
            current = [*keys, index]
        else:
            current.append(index)
    parts.append(current)
    title = str(table.title or "")
    for number, columns in enumerate(parts, 1):
        part_title = (f"{title} ({number} of {len(parts)})" if len(parts) > 1 and title
                      else title or None)
        part = _table_part(table, columns, title=part_title)
        _set_widths(part, [ranges[i] for i in columns], width)
        console.print(part)


def _overhead(columns: int) -> int:
    """Characters a table with ``columns`` columns adds to its cells: one space of
    padding each side of a cell, a rule between columns and at both edges."""
    return 3 * columns + 1


def _column_range(console: Console, column: Any) -> tuple[int, int]:
    """(longest word, widest line) over a column's header and cells, padding excluded."""
    from rich.measure import Measurement

    wide = console.options.update_width(10_000)
    sizes = [Measurement.get(console, wide, item) for item in (column.header, *column.cells)]
    return max(size.minimum for size in sizes), max(size.maximum for size in sizes)


def _set_widths(table: Table, ranges: list[tuple[int, int]], width: int) -> None:
    """Fix the column widths of a table that is too wide at its natural size: each
    column gets its minimum and a share of the room left in proportion to what it
    lacks (rich's own squeezing cuts one-word headers: ``predict…``)."""
    room = width - _overhead(len(ranges))
    if sum(top for _, top in ranges) <= room:
        return  # fits as it is
    spare = max(room - sum(low for low, _ in ranges), 0)
    wanted = [top - low for low, top in ranges]
    total = sum(wanted) or 1
    widths = [low + spare * need // total for (low, _), need in zip(ranges, wanted, strict=True)]
    for column, chosen in zip(table.columns, widths, strict=True):
        column.width = chosen


def _table_part(table: Table, columns: list[int], *, title: str | None) -> Table:
    """A copy of ``table`` with only the columns at ``columns`` (in that order)."""
    from rich.table import Table

    part = Table(title=title, show_header=table.show_header, show_lines=table.show_lines)
    for index in columns:
        column = table.columns[index]
        part.add_column(column.header, justify=column.justify)
    cells = [list(table.columns[index].cells) for index in columns]
    for row in zip(*cells, strict=True):
        part.add_row(*row)
    return part


def _version(value: bool) -> None:
    if value:
        typer.echo(f"churnlens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    """Predict which customers will stop buying, and measure how many actually stayed."""


def quiet_mlflow() -> None:
    """Keep MLflow to warnings (it narrates migrations and registrations at INFO).

    churnlens prints its own progress. MLflow sets its loggers' level from
    ``MLFLOW_LOGGING_LEVEL`` when it is imported, which happens later, inside a
    command; a level set on the logger before that is overwritten. A value the user
    exported is kept.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (logging is configured here, never at import).

    Ctrl-C or SIGTERM before a command starts its work (while options are parsed or the
    library is imported) exits 130 with one line; once a command runs, it records and
    reports them itself (see :func:`handle_errors`).
    """
    quiet_mlflow()
    try:
        previous = {sig: signal.signal(sig, _exit_interrupted)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="churnlens")
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _exit_interrupted(signum: int, frame: object) -> None:
    message = ("interrupted after the command finished; its output is complete."
               if _finished else "interrupted; no output was written.")
    stderr().print(message, markup=False, highlight=False)
    raise SystemExit(EXIT_INTERRUPTED)


# Commands that returned normally in this process (a signal after that interrupts only
# the exit, not the work).
_finished: list[str] = []
