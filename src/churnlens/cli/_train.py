"""``train``, ``backtest`` and ``export``: the data scientist's commands."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from churnlens.cli._app import Steps, app, handle_errors, print_metrics, quiet_mlflow, stdout
from churnlens.cli._options import (
    ENGINES,
    OPTION_NAMES,
    AsOfListOpt,
    AsOfOpt,
    CalendarOpt,
    ConfigOpt,
    EngineOpt,
    HorizonOpt,
    InputFiles,
    JsonOpt,
    MasterOpt,
    ModelOpt,
    ReportOpt,
    TrackingOpt,
    TransactionInput,
    check_model_source,
    input_tables,
    parse_day,
    positive_days,
    reads_inputs,
    reads_transactions,
)

_SHOWN = ("auc", "pr_auc", "brier", "log_loss", "lift_top_decile", "predicted_retention",
          "actual_retention")
_ABLATION_SHOWN = ("input_features", "auc", "brier", "lift_top_decile",
                   "predicted_cohort_retention", "actual_cohort_retention",
                   "predicted_crr", "actual_crr")
NoAblationOpt = Annotated[bool, typer.Option(
    "--no-ablation", help="With input files or columns: do not also backtest the model "
    "without each input group (faster; no ablation table).")]
_VALUE_SHOWN = ("mae", "rmse", "spearman", "aggregate_error_pct", "predicted_total",
                "actual_total")


def _print_ablation(out: Any, run: dict[str, Any]) -> None:
    """The ablation of one run: the churnlens model with and without each input group."""
    rows = run.get("ablation")
    if not rows:
        return
    print_metrics(out, f"ablation at {run['as_of']}: the churnlens model with and without "
                  "each input group", {r["variant"]: r for r in rows}, _ABLATION_SHOWN)


def _print_value(out: Any, run: dict[str, Any]) -> None:
    """The value backtest of one run: predicted vs actual spend in the horizon."""
    value = run.get("value")
    if not value or not value.get("models"):
        return
    print_metrics(out, f"value backtest at {run['as_of']}: spend in the horizon, predicted vs "
                  "actual", value["models"], _VALUE_SHOWN)
    for name, what in value.get("predictors", {}).items():
        out.print(f"  {name}: {what}", highlight=False)
    out.print(f"  actual: {value.get('actual', '')}", highlight=False)


@app.command()
@handle_errors
@reads_transactions
@reads_inputs
def train(
    source: TransactionInput,
    inputs: InputFiles,
    as_of: AsOfOpt,
    horizon_days: HorizonOpt = None,
    promote: Annotated[bool, typer.Option("--promote", help="Make this model the champion "
                                          "whatever its metric.")] = False,
    report: ReportOpt = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Also export the model "
                                                "bundle to this folder.")] = None,
    tracking_uri: TrackingOpt = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="MLflow experiment."
                                                   )] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log or register "
                                            "(use --bundle to keep the model).")] = False,
    as_json: JsonOpt = False,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = "local[2]",
    no_ablation: NoAblationOpt = False,
    calendar: CalendarOpt = False,
) -> None:
    """Train a churn model at an as-of date, backtest it, log and register it in MLflow.

    With --customers-file / --events-file (or optional transaction columns) the model
    also reads those inputs; it then refuses to score without the same tables.
    """
    from churnlens._io import check_output_folder, check_output_path
    from churnlens._pipeline import train as run_training
    from churnlens._validation import require_choice

    quiet_mlflow()
    require_choice(engine, name="--engine", allowed=ENGINES)
    as_of_date = parse_day(as_of)
    horizon_days = positive_days(horizon_days)
    # outputs are checked before hours of training, not after
    if report is not None:
        check_output_path(report, suffixes=(".html", ".htm"))
    if bundle is not None:
        check_output_folder(bundle)
    settings = source.settings(
        horizon_days=horizon_days,
        **{"mlflow.tracking_uri": tracking_uri, "mlflow.experiment": experiment,
           "mlflow.enabled": False if no_mlflow else None},
    )
    tables = input_tables(inputs, settings, calendar=calendar, as_of=as_of_date)
    with Steps() as steps:
        result = run_training(source.path, as_of=as_of_date, settings=settings,
                              promote=promote, report_path=report, bundle_dir=bundle,
                              progress=steps, engine=engine, master=master, inputs=tables,
                              ablation=not no_ablation, calendar=calendar)
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    out = stdout()
    if summary["run_id"]:
        out.print(f"run {summary['run_id']}: model {settings.mlflow.registered_model} "
                  f"version {summary['model_version']} -> @{summary['alias']} "
                  f"({summary['promotion_reason']})", highlight=False)
    title = (f"held-out validation (cutoff {result.fitted.cutoffs[-1]}, "
             f"horizon {summary['horizon_days']} d)")
    print_metrics(out, title, summary["validation"], _SHOWN)
    for run in summary["backtest"]:
        print_metrics(out, f"backtest at {run['as_of']}", run["models"],
                      (*_SHOWN, "predicted_crr", "actual_crr"))
        _print_ablation(out, run)
        _print_value(out, run)
    used = summary["inputs"]
    out.print("inputs: " + ("; ".join(f"{g} ({len(f)} features: {', '.join(f)})"
                                       for g, f in used["features"].items())
                            if used["groups"] else "transactions only"), highlight=False)
    for note in summary["notes"]:
        out.print(f"note: {note}", highlight=False)
    if summary["report"]:
        out.print(f"report: {summary['report']}", highlight=False)
    if summary["bundle"]:
        out.print(f"bundle: {summary['bundle']}", highlight=False)


@app.command()
@handle_errors
@reads_transactions
@reads_inputs
def backtest(
    source: TransactionInput,
    inputs: InputFiles,
    as_of: AsOfListOpt,
    horizon_days: HorizonOpt = None,
    as_json: JsonOpt = False,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = "local[2]",
    no_ablation: NoAblationOpt = False,
    calendar: CalendarOpt = False,
) -> None:
    """Train at each as-of date and evaluate on the following horizon, against baselines.

    Baselines: recency, logistic regression, BG/NBD and Pareto/NBD. The value backtest
    compares each customer's predicted spend in the horizon with what they spent. With
    input files (or optional transaction columns), the ablation table shows the model
    with and without each input group.
    """
    from churnlens._pipeline import open_transactions
    from churnlens._training import backtest as run_backtest
    from churnlens._validation import require_choice

    require_choice(engine, name="--engine", allowed=ENGINES)
    as_of_dates = [parse_day(day) for day in as_of]
    horizon_days = positive_days(horizon_days)
    settings = source.settings(horizon_days=horizon_days)
    tables = input_tables(inputs, settings, calendar=calendar)
    with Steps() as steps, contextlib.ExitStack() as stack:
        steps("loading and validating transactions")
        tx, _ = open_transactions(source.path, None, settings, engine=engine, master=master,
                                  progress=steps, stack=stack)
        result = run_backtest(tx, as_of_dates, settings, progress=steps, inputs=tables,
                              ablation=not no_ablation, calendar=calendar)
    document = result.to_dict()
    if as_json:
        typer.echo(json.dumps(document))
        return
    out = stdout()
    for run in document["runs"]:
        print_metrics(
            out, f"backtest at {run['as_of']} (horizon {run['horizon_days']} d)", run["models"],
            (*_SHOWN, "predicted_cohort_retention", "actual_cohort_retention",
             "predicted_crr", "actual_crr"))
        _print_ablation(out, run)
        _print_value(out, run)
        for note in run.get("warnings", []):
            out.print(f"  note: {note}", highlight=False)
    coverage = document["interval_coverage"].get("churnlens")
    if coverage:
        out.print(
            f"churnlens' 95% intervals held the actual in {coverage['cohort_retention_inside']}"
            f" of {coverage['dates']} date(s) for cohort retention and "
            f"{coverage['crr_inside']} for CRR (they cover who churns and the model's "
            "measured level error).", highlight=False)


@app.command()
@handle_errors
def export(
    model: ModelOpt = "models:/churnlens@champion",
    to: Annotated[Path, typer.Option("--to", help="Folder for the bundle.")] = Path("models"),
    tracking_uri: TrackingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export a registered model as a joblib bundle with a JSON model card (SHA-256)."""
    quiet_mlflow()
    from churnlens._artifact import save_bundle
    from churnlens._config import load_config
    from churnlens._io import check_output_folder
    from churnlens._model_loader import load_model

    check_output_folder(to)
    check_model_source(model)
    settings = load_config(config, {"mlflow.tracking_uri": tracking_uri},
                           option_names=OPTION_NAMES)
    artifact = load_model(model, settings.mlflow)
    card = save_bundle(artifact, to)
    stdout().print(f"exported {model} (version {artifact.version}, as of {artifact.as_of}, "
                   f"horizon {artifact.horizon_days} d) to {card.parent}", highlight=False)
