"""Every option shared by two or more commands, written once.

A command that reads transactions takes one ``source: TransactionInput`` parameter and
is decorated with :func:`reads_transactions`: the decorator gives it ``--transactions``,
``--config``, the column flags (``--customer-col``, ``--time-col``, ``--amount-col``,
``--time-format``, ``--delimiter``), the optional columns (``--order-col``,
``--quantity-col``, ``--category-col``, ``--channel-col``, ``--discount-col``) and
``--max-staleness-days``. These flags default to
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
    from churnlens._input_features import InputTables
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
OrderColOpt = Annotated[
    str | None,
    typer.Option("--order-col", help="Optional column holding the order id (details "
                                     "features) [default: the config's data.order_col, "
                                     "else not read]."),
]
QuantityColOpt = Annotated[
    str | None,
    typer.Option("--quantity-col", help="Optional column holding the quantity, a number per "
                                        "row [default: the config's data.quantity_col, else "
                                        "not read]."),
]
CategoryColOpt = Annotated[
    str | None,
    typer.Option("--category-col", help="Optional column holding the product category "
                                        "(text; empty = missing) [default: the config's "
                                        "data.category_col, else not read]."),
]
ChannelColOpt = Annotated[
    str | None,
    typer.Option("--channel-col", help="Optional column holding the sales channel (text; "
                                       "empty = missing) [default: the config's "
                                       "data.channel_col, else not read]."),
]
DiscountColOpt = Annotated[
    str | None,
    typer.Option("--discount-col", help="Optional column holding the discount taken off the "
                                        "row's price (a number >= 0; empty = 0) [default: "
                                        "the config's data.discount_col, else not read]."),
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
    "data.order_col": "--order-col", "data.quantity_col": "--quantity-col",
    "data.category_col": "--category-col", "data.channel_col": "--channel-col",
    "data.discount_col": "--discount-col",
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
    order_col, quantity_col, category_col, channel_col, discount_col
        The optional column flags (``--order-col`` ...); ``None`` when not given (the
        config's value applies, by default: not read).
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
    order_col: str | None = None
    quantity_col: str | None = None
    category_col: str | None = None
    channel_col: str | None = None
    discount_col: str | None = None

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
                  "data.max_staleness_days": self.max_staleness_days,
                  "data.order_col": self.order_col, "data.quantity_col": self.quantity_col,
                  "data.category_col": self.category_col,
                  "data.channel_col": self.channel_col,
                  "data.discount_col": self.discount_col, **overrides}
        return load_config(self.config, dotted, option_names=OPTION_NAMES)

    def files(self) -> dict[str, Path | None]:
        """The file read, by its option (``check_output_path(inputs=...)``)."""
        return {"--transactions": self.path}

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
    ("order_col", OrderColOpt),
    ("quantity_col", QuantityColOpt),
    ("category_col", CategoryColOpt),
    ("channel_col", ChannelColOpt),
    ("discount_col", DiscountColOpt),
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


# --- the customer and event tables beside the transactions (issue 21) ---------------

CustomersFileOpt = Annotated[Path | None, typer.Option(
    "--customers-file", help="Customer table (customer_id and attributes; docs/inputs.md): "
    "validate checks it and prints its cleaning report; train and backtest learn attribute "
    "features from it (features writes them); a model trained with it needs it to score.")]
ValidFromColOpt = Annotated[str | None, typer.Option(
    "--valid-from-col", help="The customer table's column of the day each row's "
    "attributes start to hold (attributes that change).")]
EventsFileOpt = Annotated[Path | None, typer.Option(
    "--events-file", help="Event table (customer_id, timestamp, event_type, optional value; "
    "docs/inputs.md): validate checks it and prints its cleaning report; train and "
    "backtest learn event features from it (features writes them); a model trained with "
    "it needs it to score.")]
EventTypesOpt = Annotated[str | None, typer.Option(
    "--event-types", help="The event types expected, comma-separated (for example "
    "email_open,site_visit): others are dropped and counted; only unknown ones fail.")]
EventValueColOpt = Annotated[str | None, typer.Option(
    "--event-value-col", help="The event table's optional numeric value column (for "
    "example value: pages viewed).")]
# train, backtest and features: on, the calendar group whatever the history's length
# (learn_input_spec(calendar=True)), so features writes the columns a model trained with
# it scores with
CalendarOpt = Annotated[bool | None, typer.Option(
    "--calendar/--no-calendar", help="The calendar group: the season features (season_sin, "
    "season_cos, last_year_window_share; docs/features.md), which features then writes as "
    "a model trained with it scores them, and in train and backtest the seasonal clock "
    "(docs/training.md). Off by default: it cut the level error on a strongly seasonal log "
    "(12.4 to 2.6 points) but worsened it by up to 0.9 points on logs without a season; "
    "the backtest's ablation shows what it is worth on yours.", show_default=False)]


@dataclasses.dataclass(frozen=True)
class InputFiles:
    """The customer and event tables of a command beside its transactions (the shared
    options ``--customers-file --valid-from-col --events-file --event-types
    --event-value-col``; docs/inputs.md).

    Attributes
    ----------
    customers_file
        ``--customers-file``; ``None``: not given.
    valid_from_col
        ``--valid-from-col``: the customer table's column of the day a row starts to hold.
    events_file
        ``--events-file``; ``None``: not given.
    event_types
        ``--event-types`` as typed (comma-separated); ``None`` keeps every type.
    event_value_col
        ``--event-value-col``: the event table's optional numeric value column.
    """

    customers_file: Path | None = None
    valid_from_col: str | None = None
    events_file: Path | None = None
    event_types: str | None = None
    event_value_col: str | None = None

    @property
    def given(self) -> bool:
        """Whether a customer table or an event table was given."""
        return self.customers_file is not None or self.events_file is not None

    def files(self) -> dict[str, Path | None]:
        """The files read, by option (``None``: not given; ``check_output_path(inputs=...)``)."""
        return {"--customers-file": self.customers_file, "--events-file": self.events_file}

    def flags(self) -> list[str]:
        """The file flags given (``--customers-file``, ``--events-file``), for messages."""
        return [flag for flag, value in (("--customers-file", self.customers_file),
                                         ("--events-file", self.events_file))
                if value is not None]

    def event_type_list(self) -> list[str] | None:
        """``--event-types`` split on commas (blank entries dropped); ``None``: not given."""
        if self.event_types is None:
            return None
        return [t.strip() for t in self.event_types.split(",") if t.strip()]

    def check(self) -> None:
        """Refuse a flag that describes a file not given, before any work.

        Raises
        ------
        ChurnlensError
            ``--valid-from-col`` without ``--customers-file``, or ``--event-types`` /
            ``--event-value-col`` without ``--events-file``.
        """
        from churnlens.exceptions import ChurnlensError

        for flag, value, needs in (("--valid-from-col", self.valid_from_col,
                                    self.customers_file),
                                   ("--event-types", self.event_types, self.events_file),
                                   ("--event-value-col", self.event_value_col,
                                    self.events_file)):
            if value is not None and needs is None:
                owner = "--customers-file" if flag == "--valid-from-col" else "--events-file"
                raise ChurnlensError(f"{flag} needs {owner}. Suggestion: give the file it "
                                     "describes, or leave the option out.")

    def load_tables(self, *, as_of: dt.date | None = None,
                    scoring: bool = False) -> tuple[Any, Any]:
        """``(CleanCustomers | None, CleanEvents | None)``: each file given, loaded and
        checked by :func:`churnlens._inputs.load_customers` / ``load_events`` (events
        after ``as_of`` dropped and counted). Raises what those loaders raise, except,
        with ``scoring``, for an event file whose events are all after ``as_of``: no
        event yet is valid for scoring (the API accepts ``[]``), so the events are then
        an empty frame ("no event" for everyone); training keeps the refusal."""
        from churnlens._inputs import load_customers, load_events
        from churnlens.exceptions import EmptyDataError

        self.check()
        customers = (None if self.customers_file is None else
                     load_customers(self.customers_file, valid_from_col=self.valid_from_col))
        events = None
        if self.events_file is not None:
            options: dict[str, Any] = {"event_types": self.event_type_list(),
                                       "value_col": self.event_value_col}
            try:
                events = load_events(self.events_file, as_of=as_of, **options)
            except EmptyDataError:
                if not scoring or as_of is None:
                    raise
                # valid without the as-of date (else that refusal stands): no event yet
                whole = load_events(self.events_file, **options).events
                events = whole.iloc[:0].reset_index(drop=True)
        return customers, events

    def load(self, *, as_of: dt.date | None = None, scoring: bool = False) -> InputTables:
        """The tables given, as the :class:`churnlens._input_features.InputTables` the
        library takes (a table not given is ``None``); ``scoring``: see
        :meth:`load_tables`."""
        from churnlens._input_features import InputTables

        customers, events = self.load_tables(as_of=as_of, scoring=scoring)
        return InputTables(customers=customers, events=events)


def scoring_tables(inputs: InputFiles, artifact: Any, settings: Any, as_of: dt.date | None,
                   *, warn: Callable[[str], None],
                   progress: Callable[[str], None] | None = None) -> Any:
    """The customer and event tables a model scores with (``score``, ``serve``): the
    refusal of a model that needs a table not given first (before any work), then only
    the files the model uses, loaded (events after ``as_of`` dropped; none left is "no
    event"). A table the model was not trained with is not read: ``warn`` gets each
    note (the commands print it as a ``warning:`` line). ``None``: no table used."""
    from churnlens._scoring import input_spec_of, mapped_details, require_inputs

    inputs.check()
    notes = require_inputs(artifact, customers=inputs.customers_file is not None,
                           events=inputs.events_file is not None,
                           detail_columns=mapped_details(settings))
    for note in notes:
        warn(note)
    spec = input_spec_of(artifact)
    used = dataclasses.replace(
        inputs,
        **({} if spec.requires_customers else {"customers_file": None,
                                                "valid_from_col": None}),
        **({} if spec.requires_events else {"events_file": None, "event_types": None,
                                             "event_value_col": None}))
    if not used.given:
        return None
    if progress is not None:
        progress("loading the customer and event tables")
    return used.load(as_of=as_of, scoring=True)


def input_tables(inputs: InputFiles, settings: Any, *, calendar: bool | None = False,
                 as_of: dt.date | None = None, scoring: bool = False) -> Any:
    """The richer inputs of a training or features command (``train``, ``backtest``,
    ``features``): the files given, loaded (:meth:`InputFiles.load`); none given: the
    empty tables when the transactions map an optional column (``--category-col`` ...)
    or ``calendar`` is on (the details and calendar groups), else ``None`` (the
    transactions' own features)."""
    inputs.check()
    data = settings.data
    details = any(getattr(data, f"{c}_col", None) for c in (
        "order", "quantity", "category", "channel", "discount"))
    if inputs.given:
        return inputs.load(as_of=as_of, scoring=scoring)
    if details or calendar:
        from churnlens._input_features import InputTables

        return InputTables()
    return None


_INPUT_FILES = (
    ("customers_file", CustomersFileOpt),
    ("valid_from_col", ValidFromColOpt),
    ("events_file", EventsFileOpt),
    ("event_types", EventTypesOpt),
    ("event_value_col", EventValueColOpt),
)


def reads_inputs(func: F) -> F:
    """Give a command the customer and event table options, as one ``inputs`` argument.

    ``func`` takes ``inputs: InputFiles`` and its own options; the command typer sees
    takes ``func``'s own options, then ``--customers-file --valid-from-col --events-file
    --event-types --event-value-col``. Composes with :func:`reads_transactions` in
    either order (``@reads_transactions`` above ``@reads_inputs`` keeps
    ``--transactions`` first).
    """
    own = [p for name, p in inspect.signature(func, eval_str=True).parameters.items()
           if name != "inputs"]
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        *(p.replace(kind=keyword) for p in own),
        *(inspect.Parameter(name, keyword, annotation=annotation, default=None)
          for name, annotation in _INPUT_FILES),
    ]

    @functools.wraps(func)
    def command(**options: Any) -> Any:
        inputs = InputFiles(**{name: options.pop(name) for name, _ in _INPUT_FILES})
        return func(inputs=inputs, **options)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command  # type: ignore[return-value]
