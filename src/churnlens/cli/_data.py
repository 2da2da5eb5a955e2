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
    InputFiles,
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
    reads_inputs,
    reads_transactions,
)


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
    details: Annotated[bool, typer.Option(
        "--details", help="Add the transactions' optional columns: order_id, quantity, "
        "category (customers who drop out sooner buy in fewer categories), channel and "
        "discount (docs/inputs.md; load them with --order-col order_id --quantity-col "
        "quantity --category-col category --channel-col channel --discount-col "
        "discount).")] = False,
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
                                     input_effects=not no_input_effects, details=details)
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
@reads_inputs
def validate(
    source: TransactionInput,
    inputs: InputFiles,
    as_of: OptionalAsOfOpt = None,
    as_json: JsonOpt = False,
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
    extras = _input_reports(inputs, as_of=parse_optional_day(as_of))
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), **{
            f"{name}_file": extra.to_dict() for name, extra in extras.items()}}))
        return
    table = Table(title="cleaning report", show_header=False)
    for label, value in report.lines():
        table.add_row(label, Text(value))  # Text: a path's "[/b]" or ":x:" stays as written
    stdout().print(table)
    for name, extra in extras.items():
        extra_table = Table(title=f"cleaning report: {name} table", show_header=False)
        for label, value in extra.lines():
            extra_table.add_row(label, Text(value))
        stdout().print(extra_table)
    stdout().print("valid: the file meets the transaction contract.", highlight=False)
    for name in extras:
        stdout().print(f"valid: the {name} table meets its contract.", highlight=False)


def _input_reports(inputs: InputFiles, *, as_of: Any) -> dict[str, Any]:
    """The cleaning reports of the customer and event tables given (checks them)."""
    customers, events = inputs.load_tables(as_of=as_of)
    reports: dict[str, Any] = {}
    if customers is not None:
        reports["customers"] = customers.report
    if events is not None:
        reports["events"] = events.report
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
