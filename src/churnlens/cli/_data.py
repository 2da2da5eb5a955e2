"""``generate`` and ``validate``: make and check transaction files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from churnlens._io import TABLE_SUFFIXES, check_output_path, write_table
from churnlens._loading import load_transactions
from churnlens._synthetic import generate_transactions
from churnlens.cli._app import (
    AmountColOpt,
    AsOfOpt,
    CustomerColOpt,
    JsonOpt,
    TimeColOpt,
    TimeFormatOpt,
    TransactionsOpt,
    app,
    handle_errors,
    stderr,
    stdout,
)


@app.command()
@handle_errors
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.csv or .parquet).")],
    customers: Annotated[int, typer.Option("--customers", "-n", help="Customers to simulate.")
                         ] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same file).")] = 0,
    start: Annotated[str, typer.Option("--start", help="First day of the data.")] = "2023-01-01",
    end: Annotated[str, typer.Option("--end", help="Last day of the data.")] = "2024-12-31",
) -> None:
    """Write realistic synthetic purchase transactions."""
    target = check_output_path(out, suffixes=TABLE_SUFFIXES)
    began = time.perf_counter()
    with stderr().status(f"simulating {customers:,} customers"):
        frame = generate_transactions(customers, seed=seed, start=start, end=end)
        write_table(frame, target)
    seconds = time.perf_counter() - began
    stdout().print(
        f"wrote {len(frame):,} transactions for {customers:,} customers "
        f"({frame['timestamp'].min().date()} .. {frame['timestamp'].max().date()}) "
        f"to {target} in {seconds:.1f} s",
        highlight=False,
    )


@app.command()
@handle_errors
def validate(
    transactions: TransactionsOpt,
    customer_col: CustomerColOpt = "customer_id",
    time_col: TimeColOpt = "timestamp",
    amount_col: AmountColOpt = "amount",
    time_format: TimeFormatOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a transactions file against the data contract and print the cleaning report."""
    _, report = load_transactions(
        transactions, customer_col=customer_col, time_col=time_col, amount_col=amount_col,
        time_format=time_format, as_of=as_of,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    table = Table(title="cleaning report", show_header=False)
    for label, value in report.lines():
        table.add_row(label, value)
    stdout().print(table)
    stdout().print("valid: the file meets the transaction contract.", highlight=False)
