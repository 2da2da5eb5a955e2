"""``retention`` and ``cohorts``: the retention that actually happened (retention.md)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from churnlens.cli._app import app, handle_errors, header_text, print_fitted, stderr, stdout
from churnlens.cli._options import (
    ENGINES,
    CsvOpt,
    EngineOpt,
    FigureOutOpt,
    HistoryEndOpt,
    JsonOpt,
    MasterOpt,
    OptionalAsOfOpt,
    PeriodEndOpt,
    PeriodStartOpt,
    SegmentColOpt,
    TransactionInput,
    parse_optional_day,
    positive_days,
    reads_transactions,
)
from churnlens.exceptions import ChurnlensError

if TYPE_CHECKING:
    import pandas as pd

    from churnlens._loading_sql import CleanTransactions
    from churnlens._retention import RetentionRates
    from churnlens._spark_loading import SparkLoadResult


@app.command()
@handle_errors
@reads_transactions
def retention(
    source: TransactionInput,
    start: PeriodStartOpt = None,
    end: PeriodEndOpt = None,
    every: Annotated[str | None, typer.Option(
        "--every", help="A series of consecutive periods: quarter, month, year or Nd "
                        "(such as 28d). --start/--end then limit its range.")] = None,
    window_days: Annotated[int | None, typer.Option(
        "--window-days", help="Activity window in days (default: the period length).")] = None,
    segment_col: SegmentColOpt = None,
    csv: CsvOpt = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="With --every: draw CRR and cohort retention over time "
                       "(.png, .svg or .pdf).")] = None,
    as_of: OptionalAsOfOpt = None,
    as_json: JsonOpt = False,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = "local[2]",
) -> None:
    """Customer retention rate (CRR) and related rates for one period or a series.

    The file is read out of core by DuckDB; with --engine spark, the same queries run
    on Spark (docs/scale.md).
    """
    import pandas as pd

    from churnlens._io import check_output_path, frame_records
    from churnlens._retention import (
        COUNT_COLUMNS,
        RATE_COLUMNS,
        coverage_note,
        retention_rates,
        retention_series,
    )
    from churnlens.plots import FIGURE_SUFFIXES

    if every is None and (start is None or end is None):
        raise ChurnlensError(
            "give --start and --end for one period, or --every for a series of periods. "
            "Suggestion: churnlens retention --transactions FILE --start 2024-03-31 "
            "--end 2024-06-30."
        )
    if plot is not None and every is None:
        raise ChurnlensError("--plot draws a series. Suggestion: add --every quarter.")
    reads = source.files()
    csv_path = (check_output_path(csv, suffixes=(".csv",), inputs=reads)
                if csv is not None else None)
    plot_path = (check_output_path(plot, suffixes=FIGURE_SUFFIXES, inputs=reads)
                 if plot is not None else None)
    first = parse_optional_day(start, flag="--start")
    last = parse_optional_day(end, flag="--end")
    positive_days(window_days, flag="--window-days")
    with _engine(engine, master) as spark:
        loaded = _load(source, as_of, segment_col, spark)
        tx = loaded  # the clean rows: the queries run out of core (or on Spark)

        if every is not None:
            series = retention_series(tx, every, window_days=window_days, start=first, end=last,
                                      segment_col=segment_col)
            figure = None
            if plot_path is not None:
                from churnlens.plots import plot_retention_series

                figure = plot_retention_series(series, title=f"Retention by {every}")
            _write(series, csv_path, figure, plot_path)
            if as_json:
                _print_json({"every": every, "window_days": window_days,
                             "segment_col": segment_col, "periods": frame_records(series)})
            else:
                _print_series(series, every, segment_col)
            return

        assert first is not None
        assert last is not None
        note = coverage_note(loaded.report.first_day, loaded.report.last_day, first, last,
                             window_days)
        if segment_col is None:
            rates = retention_rates(tx, first, last, window_days=window_days)
            _write(pd.DataFrame([rates.to_dict()]), csv_path)
            if note:
                stderr().print(f"note: {note}.", markup=False, highlight=False)
            if as_json:
                _print_json(rates.to_dict())
            else:
                _print_rates(rates)
            return
        by_segment = retention_rates(tx, first, last, window_days=window_days,
                                     segment_col=segment_col)
        _write(by_segment, csv_path)
        if note:
            stderr().print(f"note: {note}.", markup=False, highlight=False)
        window = window_days or (last - first).days
        if as_json:
            _print_json({"start": first.isoformat(), "end": last.isoformat(),
                         "window_days": window, "segment_col": segment_col,
                         "segments": frame_records(by_segment)})
        else:
            _print_table(by_segment, [segment_col, *COUNT_COLUMNS, *RATE_COLUMNS],
                         title=f"retention in ({first}, {last}] by {segment_col}, activity "
                               f"window {window} days", key_columns=1)
            _print_meanings()


@app.command()
@handle_errors
@reads_transactions
def cohorts(
    source: TransactionInput,
    out: FigureOutOpt = None,
    csv: CsvOpt = None,
    end: HistoryEndOpt = None,
    segment_col: SegmentColOpt = None,
    as_of: OptionalAsOfOpt = None,
    as_json: JsonOpt = False,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = "local[2]",
) -> None:
    """Monthly acquisition cohorts: share of each cohort buying k months later.

    The file is read out of core by DuckDB; with --engine spark, the same queries run
    on Spark (docs/scale.md).
    """
    from churnlens._io import check_output_path, frame_records
    from churnlens._retention import cohort_table
    from churnlens.plots import FIGURE_SUFFIXES

    reads = source.files()
    out_path = (check_output_path(out, suffixes=FIGURE_SUFFIXES, inputs=reads)
                if out is not None else None)
    csv_path = (check_output_path(csv, suffixes=(".csv",), inputs=reads)
                if csv is not None else None)
    last = parse_optional_day(end, flag="--end")
    with _engine(engine, master) as spark:
        loaded = _load(source, as_of, segment_col, spark)
        table = cohort_table(loaded, end=last, segment_col=segment_col)
    figure = None
    if out_path is not None:
        from churnlens.plots import plot_cohort_heatmap

        figure = plot_cohort_heatmap(table)
    _write(table, csv_path, figure, out_path)
    if as_json:
        _print_json({"segment_col": segment_col, "cohorts": frame_records(table)})
    elif out_path is None and csv_path is None:
        months = [c for c in table.columns if isinstance(c, int)]
        table_view = table.rename(columns={k: f"m{k}" for k in months})
        _print_table(table_view, list(table_view.columns),
                     title="customers buying in month k after acquisition (% of cohort)",
                     key_columns=len(table.columns) - len(months))
    for path in (out_path, csv_path):
        if path is not None:
            stdout().print(f"wrote {path} ({len(table):,} cohort rows)", highlight=False,
                           markup=False)


# --- helpers ----------------------------------------------------------------------


@contextlib.contextmanager
def _engine(engine: str, master: str) -> Iterator[Any]:
    """The Spark session with --engine spark (stopped after if started here), else None."""
    from churnlens._validation import require_choice

    require_choice(engine, name="--engine", allowed=ENGINES)
    if engine != "spark":
        yield None
        return
    from churnlens._spark_loading import spark_session_for

    with spark_session_for(master, "churnlens-retention") as spark:
        yield spark


def _load(source: TransactionInput, as_of: str | None, segment_col: str | None,
          spark: Any = None) -> CleanTransactions | SparkLoadResult:
    """The file's clean rows as a DuckDB view (docs/scale.md), closed when collected; or,
    given a Spark session, as a Spark DataFrame (the contract run on Spark)."""
    from churnlens._loading_sql import EngineLimits, load_transactions_sql

    settings = source.settings()
    extra_cols = (segment_col,) if segment_col else ()
    loaded: CleanTransactions | SparkLoadResult
    if spark is not None:
        from churnlens._spark_loading import load_transactions_spark

        loaded = load_transactions_spark(source.path, spark=spark,
                                         **settings.data.loader_options(),
                                         as_of=parse_optional_day(as_of), extra_cols=extra_cols)
    else:
        limits = EngineLimits(settings.engine.memory_limit, settings.engine.temp_directory)
        loaded = load_transactions_sql(source.path, **settings.data.loader_options(),
                                       as_of=parse_optional_day(as_of), limits=limits,
                                       extra_cols=extra_cols)
    report = loaded.report
    stderr().print(
        f"read {report.rows_kept:,} transactions of {report.customers:,} customers "
        f"({report.first_day} .. {report.last_day}) from {report.source}",
        markup=False, highlight=False,
    )
    return loaded


def _write(table: pd.DataFrame, csv_path: Path | None, figure: Any = None,
           figure_path: Path | None = None) -> None:
    """Write the requested outputs (each atomically) once everything is computed."""
    if figure is not None and figure_path is not None:
        from churnlens.plots import save_figure

        save_figure(figure, figure_path)
    if csv_path is not None:
        from churnlens._io import write_table

        write_table(table, csv_path)


def _print_json(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, allow_nan=False))


def _format(value: Any, column: str) -> str:
    """One table cell (``value`` from :func:`frame_records`, so NaN is ``None``)."""
    from churnlens._retention import RATE_COLUMNS

    if value is None:
        return "n/a"
    if column in RATE_COLUMNS:
        return f"{value:.2f}%"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _print_rates(rates: RetentionRates) -> None:
    from rich.table import Table

    from churnlens._retention import COUNT_COLUMNS, RATE_COLUMNS, RetentionRates

    table = Table(title=f"retention in ({rates.start}, {rates.end}], "
                        f"activity window {rates.window_days} days")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    values = rates.to_dict()
    meanings = dict(RetentionRates.DESCRIPTIONS)
    for key, day in (("S", rates.start), ("E", rates.end)):
        moment = "start" if key == "S" else "end"
        meanings[key] = (f"customers active at the {moment}: bought in the "
                         f"{rates.window_days} days up to {day}")
    for key in (*COUNT_COLUMNS, *RATE_COLUMNS):
        value = values[key]
        shown = "n/a (denominator 0)" if value is None else _format(value, key)
        table.add_row(key, shown, meanings[key])
    print_fitted(stdout(), table)


def _print_series(series: pd.DataFrame, every: str, segment_col: str | None) -> None:
    from churnlens._retention import COUNT_COLUMNS, RATE_COLUMNS

    columns = ["period", *([segment_col] if segment_col else []), *COUNT_COLUMNS,
               *RATE_COLUMNS]
    # an incomplete period is marked on its label (a column of yes/no took the width of
    # two rates; --json and --csv keep the "complete" column)
    marks = series["complete"].map({True: "", False: "*"})
    view = series.assign(period=series["period"].astype(str) + marks)
    _print_table(view, columns, title=f"retention by {every} (periods (start, end])",
                 key_columns=2 if segment_col else 1)
    if not series["complete"].all():
        stdout().print("* incomplete period: the data do not cover the whole period and its "
                       "activity window; those rates are not reliable.", highlight=False)
    _print_meanings()


def _print_table(frame: pd.DataFrame, columns: list[Any], *, title: str,
                 key_columns: int = 1) -> None:
    """Print ``columns`` of ``frame``; on a narrow terminal, stacked in parts that each
    repeat the first ``key_columns`` columns (period, segment, cohort)."""
    from rich.table import Table

    from churnlens._io import frame_records

    table = Table(title=title)
    for column in columns:
        table.add_column(header_text(str(column)),
                         justify="left" if column in ("period", "cohort") else "right")
    for record in frame_records(frame[columns]):
        table.add_row(*(_format(record[str(c)], str(c)) for c in columns))
    print_fitted(stdout(), table, key_columns=key_columns)


def _print_meanings() -> None:
    from churnlens._retention import COUNT_COLUMNS, RATE_COLUMNS, RetentionRates

    for key in (*COUNT_COLUMNS, *RATE_COLUMNS):
        stdout().print(f"  {key}: {RetentionRates.DESCRIPTIONS[key]}", highlight=False,
                       markup=False)
