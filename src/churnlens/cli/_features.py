"""``features``: point-in-time features of every customer, written to a file."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from churnlens._version import __version__
from churnlens.cli._app import app, handle_errors, stderr, stdout
from churnlens.cli._options import (
    AsOfOpt,
    CalendarOpt,
    HorizonOpt,
    InputFiles,
    OutTableOpt,
    TransactionInput,
    input_tables,
    parse_day,
    positive_days,
    reads_inputs,
    reads_transactions,
)
from churnlens.exceptions import ChurnlensError


@app.command()
@handle_errors
@reads_transactions
@reads_inputs
def features(
    source: TransactionInput,
    inputs: InputFiles,
    as_of: AsOfOpt,
    out: OutTableOpt,
    windows_days: Annotated[
        str | None, typer.Option("--windows-days",
                                 help="Comma-separated activity windows in days [default: the "
                                      "config's features.windows_days].")
    ] = None,
    calendar: CalendarOpt = False,
    horizon_days: HorizonOpt = None,
) -> None:
    """Write one row of features per customer acquired by the as-of date (docs/features.md).

    With --customers-file or --events-file, the input features follow (docs/features.md):
    the attributes valid at the as-of date, the events up to it (none yet is valid: "no
    event"), and the purchase details of the optional columns mapped (--category-col ...;
    with or without those files), the same inputs train learns from the same flags. The
    calendar group is off, as in train by default; --calendar writes it (also without any
    file, whatever the history's length, as train), with the values a model trained with
    --calendar scores with (the window of last_year_window_share: --horizon-days, else the
    config's horizon_days; give the model's horizon)."""
    from churnlens._io import TABLE_SUFFIXES, check_output_path
    from churnlens._loading_sql import EngineLimits
    from churnlens._out_of_core import write_features_file

    target = check_output_path(out, suffixes=TABLE_SUFFIXES,
                               inputs={**source.files(), **inputs.files()})
    as_of_date = parse_day(as_of)
    settings = source.settings(horizon_days=positive_days(horizon_days))
    windows = (_parse_windows(windows_days) if windows_days is not None
               else settings.features.windows_days)
    began = time.perf_counter()
    # the inputs train learns from the same flags (details without a table too);
    # features of customers at a date: events all after it are "no event", not an error
    tables = input_tables(inputs, settings, calendar=calendar, as_of=as_of_date, scoring=True)
    # Out of core (docs/scale.md): DuckDB checks and reads the file(s) within the
    # engine's memory limit and computes the features; they are written in pieces,
    # sorted by customer id, ``as_of`` a date (YYYY-MM-DD in CSV).
    report, rows, width = write_features_file(
        source.path, as_of_date, target, windows_days=windows,
        loader_options=settings.data.loader_options(),
        limits=EngineLimits(settings.engine.memory_limit, settings.engine.temp_directory),
        inputs=tables, horizon_days=settings.horizon_days, calendar=calendar,
        metadata=lambda report: {
            "as_of": as_of_date.isoformat(), "windows_days": json.dumps(list(windows)),
            "source": report.source, "churnlens_version": __version__,
        })
    stderr().print(
        f"read {report.rows_read:,} rows; {report.dropped_after_as_of:,} after the as-of "
        f"date and {report.dropped_missing_customer_id:,} without a customer id were left out",
        highlight=False,
    )
    stdout().print(
        f"wrote features of {rows:,} customers as of {as_of_date} "
        f"({width} features) to {target} in "
        f"{time.perf_counter() - began:.1f} s",
        highlight=False,
    )


def _parse_windows(text: str) -> tuple[int, ...]:
    try:
        windows = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ChurnlensError(
            f"--windows-days: {text!r} is not a comma-separated list of whole days. "
            "Suggestion: for example --windows-days 30,90,180,365."
        ) from None
    for window in windows:
        positive_days(window, flag="--windows-days")
    return windows
