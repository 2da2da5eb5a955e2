"""The typer application and error handling for every command.

Shared options live in :mod:`churnlens.cli._options`. Nothing here imports pandas or
the library: ``churnlens --version`` and ``--help`` must start fast.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

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

F = TypeVar("F", bound=Callable[..., Any])


def stdout() -> Console:
    """Console for results (stdout); wide when piped, so tables are never truncated."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)
    return console


def stderr() -> Console:
    """Console for progress and errors (stderr), so stdout stays parseable."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def handle_errors(func: F) -> F:
    """Turn churnlens errors into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ChurnlensError as exc:
            stderr().print(f"error: {exc}", markup=False, highlight=False, emoji=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            stderr().print("interrupted; no output was written.", markup=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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
    """A table of metrics by model: churnlens first, then the baselines."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("model")
    for key in keys:
        table.add_column(key, justify="right")
    # churnlens first, then the baselines in their usual order
    order = ("churnlens", "bgnbd", "logistic", "recency")
    names = sorted(by_model, key=lambda n: (order.index(n) if n in order else len(order), n))
    for name in names:
        table.add_row(name, *(_fmt(by_model[name].get(k)) for k in keys))
    return table


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
    """Console-script entry point (logging is configured here, never at import)."""
    quiet_mlflow()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="churnlens")
