"""The typer application, shared options and error handling for every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from churnlens._version import __version__
from churnlens.exceptions import ChurnlensError

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
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)
    return console


def stderr() -> Console:
    """Console for progress and errors (stderr), so stdout stays parseable."""
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


# --- shared options ----------------------------------------------------------------

TransactionsOpt = Annotated[
    Path,
    typer.Option("--transactions", "-t", help="Transactions file (.csv, .csv.gz, .tsv, .parquet)."),
]
CustomerColOpt = Annotated[
    str, typer.Option("--customer-col", help="Column holding the customer id.")
]
TimeColOpt = Annotated[
    str, typer.Option("--time-col", help="Column holding the purchase timestamp or date.")
]
AmountColOpt = Annotated[
    str, typer.Option("--amount-col", help="Column holding the amount (negative = refund).")
]
TimeFormatOpt = Annotated[
    str | None,
    typer.Option("--time-format", help="strftime format of the timestamps if not ISO 8601."),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="As-of date (YYYY-MM-DD): later rows are dropped and counted."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (logging is configured here, never at import)."""
    import os

    # MLflow narrates every database migration and registration at INFO; churnlens
    # prints its own progress, so keep only MLflow's warnings. MLflow reads this when
    # it is imported (later, inside a command); a value the user exported is kept.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    app(args=argv if argv is not None else sys.argv[1:], prog_name="churnlens")
