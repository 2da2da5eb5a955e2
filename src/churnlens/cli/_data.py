"""``generate`` and ``validate``: make and check transaction files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from churnlens.cli._app import Steps, app, handle_errors, print_metrics, stdout
from churnlens.cli._options import (
    ENGINES,
    OPTION_NAMES,
    CustomersOpt,
    DataEndOpt,
    DataStartOpt,
    EngineOpt,
    FolderOutOpt,
    JsonOpt,
    MasterOpt,
    OptionalAsOfOpt,
    OutTableOpt,
    SeedOpt,
    TrackingOpt,
    TransactionInput,
    parse_day,
    parse_optional_day,
    positive_whole,
    reads_transactions,
)

CustomersFileOpt = Annotated[Path | None, typer.Option(
    "--customers-file", help="Also check a customer table (customer_id and attributes; "
    "docs/inputs.md) and print its cleaning report.")]
ValidFromColOpt = Annotated[str | None, typer.Option(
    "--valid-from-col", help="The customer table's column of the day each row's "
    "attributes start to hold (attributes that change).")]
EventsFileOpt = Annotated[Path | None, typer.Option(
    "--events-file", help="Also check an event table (customer_id, timestamp, event_type, "
    "optional value; docs/inputs.md) and print its cleaning report.")]
EventValueColOpt = Annotated[str | None, typer.Option(
    "--event-value-col", help="The event table's optional numeric value column (for "
    "example value: pages viewed).")]
EventTypesOpt = Annotated[str | None, typer.Option(
    "--event-types", help="The event types expected, comma-separated (for example "
    "email_open,site_visit): others are dropped and counted; only unknown ones fail.")]


@app.command()
@handle_errors
def generate(
    out: OutTableOpt,
    customers: CustomersOpt = 10_000,
    seed: SeedOpt = 0,
    start: DataStartOpt = "2023-01-01",
    end: DataEndOpt = "2024-12-31",
    customers_out: Annotated[Path | None, typer.Option(
        "--customers-out", help="Also write a customer table (.csv or .parquet): channel "
        "(drives churn), region, age, plan (noise), with valid_from.")] = None,
    events_out: Annotated[Path | None, typer.Option(
        "--events-out", help="Also write an event table (.csv or .parquet): email_open "
        "(fades before a customer drops out) and site_visit (noise).")] = None,
    seasonality: Annotated[float, typer.Option(
        "--seasonality", help="Strength of the yearly cycle, 0 (none) to 3 (strong); "
        "1 is the default season.")] = 1.0,
    no_input_effects: Annotated[bool, typer.Option(
        "--no-input-effects", help="With --customers-out/--events-out: make the channel "
        "and the email opens noise too (the transactions are then those written "
        "without the tables).")] = False,
) -> None:
    """Write realistic synthetic purchase transactions.

    Streams: customers are simulated 200,000 at a time and appended to the file, so
    memory stays flat for any --customers (up to 200,000 customers the rows are those of
    generate_transactions with the same seed). With --customers-out or --events-out the
    customer and event tables of generate_inputs are written too, with known effects
    (docs/inputs.md); the channel then changes dropout, so the transactions differ from
    those written without them (unless --no-input-effects).
    """
    from churnlens._io import TABLE_SUFFIXES, check_output_path
    from churnlens._synthetic import write_transactions
    from churnlens.exceptions import ChurnlensError

    positive_whole(customers, flag="--customers", example="10000")
    if not 0 <= seasonality <= 3:
        raise ChurnlensError(f"--seasonality: {seasonality:g} is outside 0 .. 3. "
                             "Suggestion: 0 for no season, 1 (the default), 3 for a strong one.")
    first, last = parse_day(start, flag="--start"), parse_day(end, flag="--end")
    target = check_output_path(out, suffixes=TABLE_SUFFIXES)
    began = time.perf_counter()
    with Steps() as steps:
        written = write_transactions(target, customers, seed=seed, start=first, end=last,
                                     season_strength=seasonality, progress=steps,
                                     customers_path=customers_out, events_path=events_out,
                                     input_effects=not no_input_effects)
    seconds = time.perf_counter() - began
    span = ("no rows" if written.first is None or written.last is None
            else f"{written.first.date()} .. {written.last.date()}")
    stdout().print(
        f"wrote {written.transactions:,} transactions for {customers:,} customers "
        f"({span}) to {target} in {seconds:.1f} s",
        highlight=False, markup=False, emoji=False,  # a path may contain "[/b]" or ":x:"
    )
    for path, rows, what in ((written.customers_path, written.customer_rows, "customer rows"),
                             (written.events_path, written.event_rows, "events")):
        if path is not None:
            stdout().print(f"wrote {rows:,} {what} to {path}", highlight=False, markup=False,
                           emoji=False)


@app.command()
@handle_errors
@reads_transactions
def validate(
    source: TransactionInput,
    as_of: OptionalAsOfOpt = None,
    as_json: JsonOpt = False,
    customers_file: CustomersFileOpt = None,
    valid_from_col: ValidFromColOpt = None,
    events_file: EventsFileOpt = None,
    event_types: EventTypesOpt = None,
    event_value_col: EventValueColOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = "local[2]",
) -> None:
    """Check a transactions file against the data contract and print the cleaning report.

    With --customers-file and --events-file, also check the customer table and the
    event table (docs/inputs.md) and print their cleaning reports.

    The checks run in DuckDB on the file itself (a glob or a directory of Parquet files
    also works), within the memory limit of the config's ``engine`` block; with
    --engine spark, the same checks run on Spark (docs/scale.md).
    """
    from rich.table import Table
    from rich.text import Text

    from churnlens._loading_sql import EngineLimits, load_transactions_sql
    from churnlens._validation import require_choice

    require_choice(engine, name="--engine", allowed=ENGINES)
    settings = source.settings()
    if engine == "spark":
        from churnlens._spark_loading import load_transactions_spark, spark_session_for

        with spark_session_for(master, "churnlens-validate") as spark:
            report = load_transactions_spark(source.path, spark=spark,
                                             **settings.data.loader_options(),
                                             as_of=parse_optional_day(as_of)).report
    else:
        limits = EngineLimits(settings.engine.memory_limit, settings.engine.temp_directory)
        with load_transactions_sql(source.path, **settings.data.loader_options(),
                                   as_of=parse_optional_day(as_of), limits=limits) as clean:
            report = clean.report
    inputs = _input_reports(customers_file, valid_from_col, events_file, event_types,
                            event_value_col, as_of=parse_optional_day(as_of))
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), **{
            f"{name}_file": extra.to_dict() for name, extra in inputs.items()}}))
        return
    table = Table(title="cleaning report", show_header=False)
    for label, value in report.lines():
        table.add_row(label, Text(value))  # Text: a path's "[/b]" or ":x:" stays as written
    stdout().print(table)
    for name, extra in inputs.items():
        extra_table = Table(title=f"cleaning report: {name} table", show_header=False)
        for label, value in extra.lines():
            extra_table.add_row(label, Text(value))
        stdout().print(extra_table)
    stdout().print("valid: the file meets the transaction contract.", highlight=False)
    for name in inputs:
        stdout().print(f"valid: the {name} table meets its contract.", highlight=False)


def _input_reports(customers_file: Path | None, valid_from_col: str | None,
                   events_file: Path | None, event_types: str | None,
                   event_value_col: str | None, *, as_of: Any) -> dict[str, Any]:
    """The cleaning reports of the customer and event tables given (checks them)."""
    from churnlens._inputs import load_customers, load_events
    from churnlens.exceptions import ChurnlensError

    for flag, value, needs in (("--valid-from-col", valid_from_col, customers_file),
                               ("--event-types", event_types, events_file),
                               ("--event-value-col", event_value_col, events_file)):
        if value is not None and needs is None:
            owner = "--customers-file" if flag == "--valid-from-col" else "--events-file"
            raise ChurnlensError(f"{flag} needs {owner}. Suggestion: give the file it "
                                 "describes, or leave the option out.")
    reports: dict[str, Any] = {}
    if customers_file is not None:
        reports["customers"] = load_customers(customers_file,
                                              valid_from_col=valid_from_col).report
    if events_file is not None:
        types = None if event_types is None else [
            t.strip() for t in event_types.split(",") if t.strip()]
        reports["events"] = load_events(events_file, event_types=types, as_of=as_of,
                                        value_col=event_value_col).report
    return reports


@app.command()
@handle_errors
def demo(
    out: FolderOutOpt = Path("demo-output"),
    customers: CustomersOpt = 20_000,
    seed: SeedOpt = 42,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Run the main job end to end on synthetic data: train, backtest, register, score."""
    from churnlens._config import load_config
    from churnlens._demo import headline, run_demo
    from churnlens._io import check_output_folder

    check_output_folder(out)
    positive_whole(customers, flag="--customers", example="20000")
    settings = load_config(overrides={"mlflow.tracking_uri": tracking_uri},
                           option_names=OPTION_NAMES)
    tracking_uri = settings.mlflow.tracking_uri
    with Steps() as steps:
        outputs = run_demo(out, customers=customers, seed=seed, settings=settings,
                           progress=steps)
    numbers = headline(outputs)
    console = stdout()
    keys = ("auc", "brier", "lift_top_decile", "predicted_retention", "actual_retention",
            "predicted_crr", "actual_crr")
    for run in numbers["backtest"]:
        print_metrics(console, f"backtest: trained at {run['as_of']}, evaluated on the next "
                               f"{run['horizon_days']} days", run["models"], keys)
    reg = numbers["registration"]
    console.print(f"model: churnlens version {reg['model_version']} -> @{reg['alias']} "
                  f"({reg['promotion_reason']}); run {reg['run_id']}", highlight=False)
    p, a = numbers["predicted"], numbers["last_actual"]
    console.print(
        f"scored {numbers['customers_scored']:,} customers: {numbers['high_risk']:,} high risk, "
        f"value at risk {numbers['value_at_risk_total']:,.2f} (the "
        f"{numbers['active_customers']:,} active customers).\n"
        f"next {outputs.document['horizon_days']} days: predicted cohort retention "
        f"{p['cohort_retention']:.1f}% "
        f"({p['cohort_retention_low']:.1f}..{p['cohort_retention_high']:.1f}), "
        f"predicted CRR {p['crr']:.1f}% (last actual: cohort retention "
        f"{a['cohort_retention']:.1f}%, CRR {a['crr']:.1f}%).\n"
        f"at-risk list: {numbers['at_risk_rows']} customers worth {numbers['at_risk_value']:,.2f}",
        highlight=False)
    for name in ("transactions", "scores", "at_risk", "report", "summary"):
        console.print(f"  {name:<13}{getattr(outputs, name)}", highlight=False)
    console.print(
        "next: open the MLflow UI with  .venv/bin/mlflow ui --backend-store-uri "
        f"{tracking_uri}\n      start the API with  .venv/bin/churnlens serve --transactions "
        f"{outputs.transactions}  (docs at http://127.0.0.1:8000/docs)", highlight=False)


@app.command()
@handle_errors
def dataset(
    name: Annotated[str, typer.Argument(help="Dataset name: cdnow (full) or cdnow-sample.")],
    out: OutTableOpt,
) -> None:
    """Write a bundled real dataset in churnlens' standard columns (needs [datasets])."""
    from churnlens._io import TABLE_SUFFIXES, check_output_path, write_table
    from churnlens._validation import require_choice
    from churnlens.datasets import load_cdnow, load_cdnow_sample

    require_choice(name, name="dataset", allowed=("cdnow", "cdnow-sample"))
    target = check_output_path(out, suffixes=TABLE_SUFFIXES)
    frame = load_cdnow() if name == "cdnow" else load_cdnow_sample()
    write_table(frame, target)
    stdout().print(f"wrote {len(frame):,} transactions for {frame['customer_id'].nunique():,} "
                   f"customers ({name}) to {target}", highlight=False)
