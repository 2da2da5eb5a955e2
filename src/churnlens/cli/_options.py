"""Every option shared by two or more commands, written once.

A command that reads transactions takes one ``source: TransactionInput`` parameter and
is decorated with :func:`reads_transactions`: the decorator gives it ``--transactions``,
``--config``, the column flags (``--customer-col``, ``--time-col``, ``--amount-col``,
``--time-format``, ``--delimiter``) and ``--max-staleness-days``. These flags default to
the config file's ``data`` section (itself defaulting to ``customer_id``, ``timestamp``,
``amount``, 7 days): a flag given wins, a flag not given keeps the file's value.

Every date a user types (``--as-of``, ``--start``, ``--end``) is read by
:func:`parse_day`: ISO 8601 ``YYYY-MM-DD`` only, the API's rule
(:func:`churnlens._validation.parse_iso_day`). Timestamps inside the data files keep
the loader's rules (``--time-format``).

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
DelimiterOpt = Annotated[
    str | None,
    typer.Option("--delimiter", help="CSV field separator, one character or 'tab' [default: "
                                     "the config's data.delimiter, else ',' (tab for .tsv)]."),
]
MaxStalenessOpt = Annotated[
    int | None,
    typer.Option("--max-staleness-days",
                 help="Refuse an --as-of more than this many days after the data's last day "
                      "(the feed may have stopped) [default: the config's "
                      "data.max_staleness_days, else 7]."),
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
ScoresHorizonOpt = Annotated[
    int | None, typer.Option("--horizon-days", help="The model's horizon, for scores that do "
                                                    "not state it (a CSV without its "
                                                    ".summary.json).")
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

DataStartOpt = Annotated[str, typer.Option("--start", help="First day of the data "
                                                     "(YYYY-MM-DD).")]
DataEndOpt = Annotated[str, typer.Option("--end", help="Last day of the data (YYYY-MM-DD).")]

CustomersOpt = Annotated[int, typer.Option("--customers", "-n", help="Customers to simulate.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")]
BootstrapSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the revenue bootstrap "
                                               "(same seed, same interval).")]
ControlSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the control group draw "
                                             "(same list and seed, same groups).")]
CampaignStartOpt = Annotated[str, typer.Option("--start", help="The day the campaign began "
                                               "(YYYY-MM-DD): the window is (start, start + H].")]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="Also write an HTML report "
                                                "here (.html).")]
NoLedgerOpt = Annotated[bool, typer.Option("--no-ledger", help="Do not record this in the "
                                           "prediction ledger (also CHURNLENS_LEDGER=off).")]
#: The engine that reads and counts (shared by validate, retention, cohorts, train,
#: backtest, score): duckdb (embedded, out of core) or spark.
ENGINES = ("duckdb", "spark")
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="duckdb (embedded: the file is read out of core, spilling to disk) or "
    "spark (the same SQL run by Spark; needs churnlens[spark] and Java 17).")]
MasterOpt = Annotated[str, typer.Option("--master", help="Spark master with --engine spark, "
                                        "when no Spark session is active (local[2], "
                                        "spark://host:7077, ...).")]


# The flag behind each settings key a command-line option overrides, so that a bad
# value is blamed on the flag the user typed (see churnlens._config.load_config).
OPTION_NAMES = {
    "data.customer_col": "--customer-col", "data.time_col": "--time-col",
    "data.amount_col": "--amount-col", "data.time_format": "--time-format",
    "data.delimiter": "--delimiter", "horizon_days": "--horizon-days",
    "mlflow.tracking_uri": "--tracking-uri", "mlflow.experiment": "--experiment",
    "mlflow.enabled": "--no-mlflow", "data.max_staleness_days": "--max-staleness-days",
}


def parse_day(text: str, *, flag: str = "--as-of") -> dt.date:
    """The date a user typed for ``flag``: parsed here, once, and passed down as a date.

    ISO 8601 ``YYYY-MM-DD`` only, as the API (:func:`churnlens._validation.parse_iso_day`):
    ``01/10/2024``, ``31.12.2024``, ``Oct 1 2024`` or ``today`` are refused, not guessed.

    Raises
    ------
    ChurnlensError
        Not of the form ``YYYY-MM-DD``, not a calendar day, or outside
        ``churnlens._validation.PLAUSIBLE_DATES``; the message names ``flag`` and the
        accepted form, and ends with a suggestion.
    """
    from churnlens._validation import parse_iso_day

    return parse_iso_day(text, name=flag)


def positive_days(value: int | None, *, flag: str = "--horizon-days") -> int | None:
    """Check a whole number of days a user typed (``None``: the option was not given).

    Checked before anything else uses it, so a bad value is reported as such (not as a
    model "trained for -5 days").

    Raises
    ------
    ChurnlensError
        ``value`` is 0 or negative.
    """
    return positive_whole(value, flag=flag, what="number of days", example="91")


def positive_whole(value: int | None, *, flag: str, what: str = "number",
                   example: str = "10") -> int | None:
    """Check that an integer option is >= 1, blaming ``flag`` (``None``: not given).

    Raises
    ------
    ChurnlensError
        ``value`` is 0 or negative; the message names ``flag``.
    """
    from churnlens.exceptions import ChurnlensError

    if value is not None and value < 1:
        raise ChurnlensError(f"{flag}: {value} is not a positive whole {what}. "
                             f"Suggestion: for example {flag} {example}.")
    return value


def check_model_source(model: str) -> None:
    """Refuse a ``--model`` that is neither a registry URI nor a bundle, before any work.

    A bundle is a folder holding ``churnlens-model.json`` (or that JSON card itself);
    any other existing file (a Parquet table, a pickle...) is named as not a model.

    Raises
    ------
    ChurnlensError
        ``model`` is an existing file that is not a JSON model card.
    """
    from churnlens.exceptions import ChurnlensError

    if model.startswith(("models:/", "runs:/")):
        return
    path = Path(model)
    if not path.is_file():
        return  # folders and missing paths: the model loader says what is missing
    try:
        with path.open("rb") as fh:
            start = fh.read(64).lstrip()
    except OSError:
        return  # the loader reports unreadable files
    if not start.startswith(b"{"):
        raise ChurnlensError(
            f"--model {model}: this file is not a churnlens model bundle or model URI (a "
            "bundle is a folder holding churnlens-model.json). Suggestion: give "
            "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model, or a bundle folder "
            "written by churnlens export or train --bundle."
        )


def _delimiter(text: str | None) -> str | None:
    """``--delimiter`` as one character (``tab`` and ``\\t`` name a tab)."""
    if text is None:
        return None
    return "\t" if text.lower() in ("tab", "\\t") else text


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
    customer_col, time_col, amount_col, time_format, delimiter
        The column flags; ``None`` when not given (the config's value applies).
    max_staleness_days
        ``--max-staleness-days``: the days an as-of date may fall after the data's last
        day; ``None`` when not given (the config's ``data.max_staleness_days``).
    """

    path: Path
    config: Path | None = None
    customer_col: str | None = None
    time_col: str | None = None
    amount_col: str | None = None
    time_format: str | None = None
    delimiter: str | None = None
    max_staleness_days: int | None = None

    def settings(self, **overrides: Any) -> Settings:
        """The config file plus the flags and ``overrides`` (dotted keys; ``None`` ignored).

        The settings carry ``data.max_staleness_days`` to every loader of the job
        (training, scoring, serving), so each refuses a stale as-of date by one rule.
        """
        from churnlens._config import load_config

        if self.max_staleness_days is not None and self.max_staleness_days < 0:
            from churnlens.exceptions import ChurnlensError

            raise ChurnlensError(
                f"--max-staleness-days: {self.max_staleness_days} is not a number of days "
                "(0 or more). Suggestion: for example --max-staleness-days 30.")
        dotted = {"data.customer_col": self.customer_col, "data.time_col": self.time_col,
                  "data.amount_col": self.amount_col, "data.time_format": self.time_format,
                  "data.delimiter": _delimiter(self.delimiter),
                  "data.max_staleness_days": self.max_staleness_days, **overrides}
        return load_config(self.config, dotted, option_names=OPTION_NAMES)

    def load(self, *, as_of: dt.date | None = None, extra_cols: Sequence[str] = (),
             settings: Settings | None = None) -> LoadResult:
        """Load and validate the transactions with the columns of ``settings``; an
        ``as_of`` too long after the data's last day is refused (``--max-staleness-days``)."""
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
    ("delimiter", DelimiterOpt),
    ("max_staleness_days", MaxStalenessOpt),
)


def reads_transactions(func: F) -> F:
    """Give a command the options that read transactions, as one ``source`` argument.

    ``func`` takes ``source: TransactionInput`` and its own options. The command typer
    sees takes ``--transactions`` first, then ``func``'s own options, then ``--config``,
    the column flags and ``--max-staleness-days``; the wrapper builds the
    :class:`TransactionInput`.
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
