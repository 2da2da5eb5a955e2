"""``train``, ``backtest`` and ``export``: the data scientist's commands."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from churnlens._config import Settings, load_config
from churnlens.cli._app import (
    AmountColOpt,
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

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file.")]
HorizonOpt = Annotated[
    int | None, typer.Option("--horizon-days", help="Churn horizon in days (default: config).")
]
TrackingOpt = Annotated[
    str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: config).")
]

_SHOWN = ("auc", "pr_auc", "brier", "log_loss", "lift_top_decile", "predicted_retention",
          "actual_retention")


def settings_from_cli(
    config: Path | None, *, customer_col: str | None = None, time_col: str | None = None,
    amount_col: str | None = None, time_format: str | None = None, **overrides: Any,
) -> Settings:
    """Config file + CLI flags (flags win; flags not given keep the file's values)."""
    dotted = {"data.customer_col": customer_col, "data.time_col": time_col,
              "data.amount_col": amount_col, "data.time_format": time_format, **overrides}
    return load_config(config, dotted)


def _quiet_mlflow() -> None:
    """Keep MLflow to warnings (it narrates migrations and registrations at INFO).

    MLflow sets its loggers' level from ``MLFLOW_LOGGING_LEVEL`` when it is imported,
    which happens later, inside the command; a level set on the logger before that is
    overwritten. A value the user exported is kept.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


class _Steps:
    """Progress on stderr: a spinner with the current step and a log of finished ones."""

    def __init__(self) -> None:
        self.console = stderr()
        self.status = self.console.status("starting")

    def __enter__(self) -> _Steps:
        self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.__exit__(*exc)

    def __call__(self, message: str) -> None:
        self.console.log(message, highlight=False)
        self.status.update(message)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _metrics_table(title: str, by_model: dict[str, dict[str, Any]], keys: tuple[str, ...]
                   ) -> Table:
    table = Table(title=title)
    table.add_column("model")
    for key in keys:
        table.add_column(key, justify="right")
    # churnlens first, then the baselines in their usual order
    order = ("churnlens", "bgnbd", "logistic", "recency")
    names = sorted(by_model, key=lambda n: (order.index(n) if n in order else len(order), n))
    for name in names:
        table.add_row(name, *(_fmt(by_model[name].get(k)) for k in keys))
    return table


@app.command()
@handle_errors
def train(
    transactions: TransactionsOpt,
    as_of: Annotated[str, typer.Option("--as-of", help="Training as-of date (YYYY-MM-DD).")],
    horizon_days: HorizonOpt = None,
    config: ConfigOpt = None,
    promote: Annotated[bool, typer.Option("--promote", help="Make this model the champion "
                                          "whatever its metric.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report here."
                                                )] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Also export the model "
                                                "bundle to this folder.")] = None,
    tracking_uri: TrackingOpt = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="MLflow experiment."
                                                   )] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log or register "
                                            "(use --bundle to keep the model).")] = False,
    customer_col: CustomerColOpt = "customer_id",
    time_col: TimeColOpt = "timestamp",
    amount_col: AmountColOpt = "amount",
    time_format: TimeFormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a churn model at an as-of date, backtest it, log and register it in MLflow."""
    from churnlens._pipeline import train as run_training

    _quiet_mlflow()
    settings = settings_from_cli(
        config, customer_col=customer_col, time_col=time_col, amount_col=amount_col,
        time_format=time_format, horizon_days=horizon_days,
        **{"mlflow.tracking_uri": tracking_uri, "mlflow.experiment": experiment,
           "mlflow.enabled": False if no_mlflow else None},
    )
    with _Steps() as steps:
        result = run_training(transactions, as_of=as_of, settings=settings, promote=promote,
                              report_path=report, bundle_dir=bundle, progress=steps)
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
    out.print(_metrics_table(title, summary["validation"], _SHOWN))
    for run in summary["backtest"]:
        out.print(_metrics_table(f"backtest at {run['as_of']}", run["models"],
                                 (*_SHOWN, "predicted_crr", "actual_crr")))
    for note in summary["notes"]:
        out.print(f"note: {note}", highlight=False)
    if summary["report"]:
        out.print(f"report: {summary['report']}", highlight=False)
    if summary["bundle"]:
        out.print(f"bundle: {summary['bundle']}", highlight=False)


@app.command()
@handle_errors
def backtest(
    transactions: TransactionsOpt,
    as_of: Annotated[list[str], typer.Option("--as-of", help="As-of date; repeat for several.")],
    horizon_days: HorizonOpt = None,
    config: ConfigOpt = None,
    customer_col: CustomerColOpt = "customer_id",
    time_col: TimeColOpt = "timestamp",
    amount_col: AmountColOpt = "amount",
    time_format: TimeFormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train at each as-of date and evaluate on the following horizon, against baselines."""
    from churnlens._loading import load_transactions
    from churnlens._training import backtest as run_backtest

    settings = settings_from_cli(
        config, customer_col=customer_col, time_col=time_col, amount_col=amount_col,
        time_format=time_format, horizon_days=horizon_days,
    )
    with _Steps() as steps:
        steps("loading and validating transactions")
        tx, _ = load_transactions(transactions, **settings.data.loader_options())
        result = run_backtest(tx, as_of, settings, progress=steps)
    document = result.to_dict()
    if as_json:
        typer.echo(json.dumps(document))
        return
    for run in document["runs"]:
        stdout().print(_metrics_table(
            f"backtest at {run['as_of']} (horizon {run['horizon_days']} d)", run["models"],
            (*_SHOWN, "predicted_cohort_retention", "actual_cohort_retention",
             "predicted_crr", "actual_crr")))


@app.command()
@handle_errors
def export(
    model: Annotated[str, typer.Option("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION"
                                       " or runs:/ID/model.")] = "models:/churnlens@champion",
    to: Annotated[Path, typer.Option("--to", help="Folder for the bundle.")] = Path("models"),
    tracking_uri: TrackingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export a registered model as a joblib bundle with a JSON model card (SHA-256)."""
    _quiet_mlflow()
    from churnlens._artifact import save_bundle
    from churnlens._tracking import load_model

    settings = settings_from_cli(config, **{"mlflow.tracking_uri": tracking_uri})
    artifact = load_model(model, settings.mlflow)
    card = save_bundle(artifact, to)
    stdout().print(f"exported {model} (version {artifact.version}, as of {artifact.as_of}, "
                   f"horizon {artifact.horizon_days} d) to {card.parent}", highlight=False)
