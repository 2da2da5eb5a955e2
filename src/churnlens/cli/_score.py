"""``score`` and ``at-risk``: the batch job's and the marketer's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from churnlens.cli._app import Steps, app, handle_errors, stderr, stdout
from churnlens.cli._options import (
    AsOfOpt,
    ExpectedHorizonOpt,
    ModelOpt,
    OutTableOpt,
    TrackingOpt,
    TransactionInput,
    check_model_source,
    parse_day,
    positive_days,
    reads_transactions,
)
from churnlens.exceptions import ChurnlensError

if TYPE_CHECKING:
    import pandas as pd


@app.command()
@handle_errors
@reads_transactions
def score(
    source: TransactionInput,
    as_of: AsOfOpt,
    out: OutTableOpt,
    model: ModelOpt = "models:/churnlens@champion",
    json_summary: Annotated[bool, typer.Option("--json-summary", help="Print the summary as "
                                               "one JSON object.")] = False,
    allow_past: Annotated[bool, typer.Option("--allow-past", help="Allow an as-of before the "
                                             "model's training as-of (backfills).")] = False,
    no_reasons: Annotated[bool, typer.Option("--no-reasons", help="Skip the per-customer "
                                             "reasons (faster).")] = False,
    horizon_days: ExpectedHorizonOpt = None,
    engine: Annotated[str, typer.Option("--engine", help="duckdb (embedded) or spark.")
                      ] = "duckdb",
    master: Annotated[str, typer.Option("--master", help="Spark master with --engine spark.")
                      ] = "local[2]",
    tracking_uri: TrackingOpt = None,
) -> None:
    """Score every customer at an as-of date and write one row per customer."""
    from churnlens._io import TABLE_SUFFIXES, check_output_path, write_json, write_table
    from churnlens._model_loader import load_model
    from churnlens._scoring import score_file
    from churnlens._validation import require_choice

    require_choice(engine, name="--engine", allowed=("duckdb", "spark"))
    target = check_output_path(out, suffixes=TABLE_SUFFIXES)
    summary_path = target.with_name(target.name + ".summary.json")
    as_of_date = parse_day(as_of)
    horizon_days = positive_days(horizon_days)
    check_model_source(model)
    settings = source.settings(**{"mlflow.tracking_uri": tracking_uri})
    transactions = source.path
    with Steps() as steps:
        steps(f"loading the model {model}")
        artifact = load_model(model, settings.mlflow, horizon_days=horizon_days)
        if engine == "spark":
            from churnlens._spark_scoring import score_file_with_spark

            result = score_file_with_spark(
                transactions, as_of_date, artifact, settings=settings, master=master,
                allow_past=allow_past, reasons=not no_reasons, progress=steps,
            )
        else:
            result = score_file(transactions, as_of_date, artifact, settings=settings,
                                allow_past=allow_past, reasons=not no_reasons, progress=steps)
        steps(f"writing {target}")
        summary = result.summary
        metadata = {"model": json.dumps(summary["model"], sort_keys=True),
                    "as_of": summary["as_of"], "horizon_days": str(artifact.horizon_days)}
        # a CSV is opened in spreadsheets: formula-like ids are neutralised there
        # (Parquet keeps every value exact)
        write_table(result.scores, target, metadata=metadata, spreadsheet_safe=True)
        if target.suffix.lower() == ".csv":
            write_json(summary, summary_path)
    summary["output"] = str(target)
    if json_summary:
        typer.echo(json.dumps(summary, allow_nan=False))
        return
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    out = stdout()
    m = summary["model"]
    out.print(f"scored {summary['customers_scored']:,} customers at {summary['as_of']} with "
              f"{m['name'] or 'bundle'} v{m['version'] or '-'} (@{m['alias'] or '-'}) "
              f"-> {summary['output']}", highlight=False)
    table = Table(title=f"next {summary['horizon_days']} days: predicted vs last actual")
    for column in ("rate", "predicted", "95% interval", "last actual"):
        table.add_column(column, justify="right" if column != "rate" else "left")
    p, a = summary["predicted"], summary["last_actual"]
    for rate in ("cohort_retention", "crr"):
        low, high = p.get(f"{rate}_low"), p.get(f"{rate}_high")
        table.add_row(rate, _pct(p.get(rate)),
                      f"{_pct(low)} .. {_pct(high)}", _pct(a.get(rate)))
    out.print(table)
    bands = summary["risk_bands"]
    out.print(f"risk bands: high {bands['high']:,}, medium {bands['medium']:,}, low "
              f"{bands['low']:,}; expected customers lost {summary['expected_customers_lost']:,.0f}"
              f"; value at risk {summary['value_at_risk_total']:,.2f}", highlight=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


@app.command("at-risk")
@handle_errors
def at_risk(
    scores: Annotated[Path, typer.Option("--scores", "-s", help="Scores written by churnlens "
                                         "score.")],
    out: OutTableOpt,
    top: Annotated[int | None, typer.Option("--top", help="Keep the first N.")] = None,
    min_risk: Annotated[float | None, typer.Option("--min-risk", help="Only risk >= R.")
                        ] = None,
    segment: Annotated[str | None, typer.Option("--segment", help="Only this RFM segment.")
                       ] = None,
    band: Annotated[str | None, typer.Option("--band", help="Only this risk band "
                                             "(high, medium, low).")] = None,
    sort: Annotated[str, typer.Option("--sort", help="churn_risk or value_at_risk.")
                    ] = "churn_risk",
) -> None:
    """Write the list of at-risk customers for a campaign (spreadsheet-safe CSV)."""
    from churnlens._io import TABLE_SUFFIXES, check_output_path, write_table
    from churnlens._rules import at_risk_list

    target = check_output_path(out, suffixes=TABLE_SUFFIXES)
    frame = _read_scores(scores)
    chosen = at_risk_list(frame, top=top, min_risk=min_risk, segment=segment, band=band,
                          sort=sort)
    write_table(chosen, target, spreadsheet_safe=True)
    stderr().print(f"wrote {len(chosen):,} of {len(frame):,} customers to {target}",
                   highlight=False)


def _read_scores(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise ChurnlensError(f"{path}: no such scores file. Suggestion: run churnlens score "
                             "first.")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        # ids as text, exactly ("NA" and "" are ids too, not missing values)
        return pd.read_csv(path, dtype={"customer_id": str}, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ChurnlensError(f"{path}: cannot read the scores ({exc}).") from exc
