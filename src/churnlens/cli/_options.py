"""Every option shared by two or more commands, written once.

A command that reads transactions takes one ``source: TransactionInput`` parameter and
is decorated with :func:`reads_transactions`: the decorator gives it ``--transactions``,
``--config`` and the column flags (``--customer-col``, ``--time-col``, ``--amount-col``,
``--time-format``). Column flags default to the config file's ``data`` section (itself
defaulting to ``customer_id``, ``timestamp``, ``amount``): a flag given wins, a flag not
given keeps the file's value.

This module imports only the standard library and typer: the library (pandas, DuckDB,
scikit-learn) is imported inside the functions that need it, so ``churnlens --help``
and ``churnlens --version`` start fast.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from churnlens._config import Settings
    from churnlens._loading import LoadResult

F = TypeVar("F", bound=Callable[..., Any])

# --- reading transactions -----------------------------------------------------------

TransactionsOpt = Annotated[
    Path,
    typer.Option("--transactions", "-t", help="Transactions file (.csv, .csv.gz, .tsv, .parquet)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (configs/default.yaml lists "
                                        "every key); flags given win over it."),
]
CustomerColOpt = Annotated[
    str | None,
    typer.Option("--customer-col", help="Column holding the customer id [default: the "
                                        "config's data.customer_col, else customer_id]."),
]
TimeColOpt = Annotated[
    str | None,
    typer.Option("--time-col", help="Column holding the purchase timestamp or date "
                                    "[default: the config's data.time_col, else timestamp]."),
]
AmountColOpt = Annotated[
    str | None,
    typer.Option("--amount-col", help="Column holding the amount (negative = refund) "
                                      "[default: the config's data.amount_col, else amount]."),
]
TimeFormatOpt = Annotated[
    str | None,
    typer.Option("--time-format", help="strftime format of the timestamps if not ISO 8601."),
]

# --- dates --------------------------------------------------------------------------

AsOfOpt = Annotated[
    str,
    typer.Option("--as-of", help="As-of date (YYYY-MM-DD): history up to and including "
                                 "this day only; later rows are dropped and counted."),
]
OptionalAsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="As-of date (YYYY-MM-DD): later rows are left out and "
                                 "counted (default: every row, up to the data's last day)."),
]
AsOfListOpt = Annotated[
    list[str], typer.Option("--as-of", help="As-of date (YYYY-MM-DD); repeat for several."),
]

# --- model, tracking, horizon -------------------------------------------------------

ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a bundle "
    "folder.")]
TrackingOpt = Annotated[
    str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: config).")
]
HorizonOpt = Annotated[
    int | None, typer.Option("--horizon-days", help="Churn horizon in days (default: config).")
]
ExpectedHorizonOpt = Annotated[
    int | None, typer.Option("--horizon-days", help="Refuse a model trained for another "
                                                    "horizon.")
]

# --- outputs ------------------------------------------------------------------------

OutTableOpt = Annotated[
    Path, typer.Option("--out", "-o", help="Output file (.csv or .parquet).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
CsvOpt = Annotated[
    Path | None, typer.Option("--csv", help="Also write the table to this .csv file.")
]
SegmentColOpt = Annotated[
    str | None,
    typer.Option("--segment-col",
                 help="Customer attribute column (such as country) to split the results by."),
]

FigureOutOpt = Annotated[
    Path | None, typer.Option(
        "--out", "-o", help="Draw the cohort heatmap to this file (.png, .svg or .pdf).")
]
FolderOutOpt = Annotated[
    Path, typer.Option("--out", "-o", help="Folder for every output.")
]

# --- periods ------------------------------------------------------------------------

PeriodStartOpt = Annotated[str | None, typer.Option(
    "--start", help="Day before the period (YYYY-MM-DD): the period is (start, end].")]
PeriodEndOpt = Annotated[str | None, typer.Option(
    "--end", help="Last day of the period (YYYY-MM-DD).")]
HistoryEndOpt = Annotated[str | None, typer.Option(
    "--end", help="Ignore transactions after this day (YYYY-MM-DD).")]

# --- synthetic data -----------------------------------------------------------------

DataStartOpt = Annotated[str, typer.Option("--start", help="First day of the data.")]
DataEndOpt = Annotated[str, typer.Option("--end", help="Last day of the data.")]

CustomersOpt = Annotated[int, typer.Option("--customers", "-n", help="Customers to simulate.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")]


def parse_day(text: str, *, flag: str = "--as-of") -> dt.date:
    """The date a user typed for ``flag``: parsed here, once, and passed down as a date.

    Raises
    ------
    ChurnlensError
        Not a date; the message names ``flag`` and ends with a suggestion.
    """
    from churnlens._validation import parse_date

    return parse_date(text, name=flag).date()


def parse_optional_day(text: str | None, *, flag: str = "--as-of") -> dt.date | None:
    """:func:`parse_day`, or ``None`` when the option was not given."""
    return None if text is None else parse_day(text, flag=flag)


@dataclasses.dataclass(frozen=True)
class TransactionInput:
    """The transactions file of a command and how to read it (the shared options).

    Attributes
    ----------
    path
        ``--transactions``.
    config
        ``--config``: the YAML settings file, or ``None`` for the defaults.
    customer_col, time_col, amount_col, time_format
        The column flags; ``None`` when not given (the config's value applies).
    """

    path: Path
    config: Path | None = None
    customer_col: str | None = None
    time_col: str | None = None
    amount_col: str | None = None
    time_format: str | None = None

    def settings(self, **overrides: Any) -> Settings:
        """The config file plus the flags and ``overrides`` (dotted keys; ``None`` ignored)."""
        from churnlens._config import load_config

        dotted = {"data.customer_col": self.customer_col, "data.time_col": self.time_col,
                  "data.amount_col": self.amount_col, "data.time_format": self.time_format,
                  **overrides}
        return load_config(self.config, dotted)

    def load(self, *, as_of: dt.date | None = None, extra_cols: Sequence[str] = (),
             settings: Settings | None = None) -> LoadResult:
        """Load and validate the transactions with the columns of ``settings``."""
        from churnlens._loading import load_transactions

        chosen = settings if settings is not None else self.settings()
        return load_transactions(self.path, **chosen.data.loader_options(), as_of=as_of,
                                 extra_cols=tuple(extra_cols))


_SHARED_INPUT = (
    ("config", ConfigOpt),
    ("customer_col", CustomerColOpt),
    ("time_col", TimeColOpt),
    ("amount_col", AmountColOpt),
    ("time_format", TimeFormatOpt),
)


def reads_transactions(func: F) -> F:
    """Give a command the options that read transactions, as one ``source`` argument.

    ``func`` takes ``source: TransactionInput`` and its own options. The command typer
    sees takes ``--transactions`` first, then ``func``'s own options, then ``--config``
    and the column flags; the wrapper builds the :class:`TransactionInput`.
    """
    own = [p for name, p in inspect.signature(func, eval_str=True).parameters.items()
           if name != "source"]
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("transactions", keyword, annotation=TransactionsOpt),
        *(p.replace(kind=keyword) for p in own),
        *(inspect.Parameter(name, keyword, annotation=annotation, default=None)
          for name, annotation in _SHARED_INPUT),
    ]

    @functools.wraps(func)
    def command(**options: Any) -> Any:
        source = TransactionInput(
            path=options.pop("transactions"),
            **{name: options.pop(name) for name, _ in _SHARED_INPUT},
        )
        return func(source=source, **options)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command  # type: ignore[return-value]
