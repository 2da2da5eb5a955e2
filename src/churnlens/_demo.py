"""The end-to-end demo: the main job on embedded defaults, in a few minutes.

synthetic data -> validation -> training with backtest (MLflow sqlite registry) ->
scoring the base -> at-risk list -> HTML report; the headline numbers printed are
read back from the files written, so what you see is what is on disk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens._config import Settings
from churnlens._io import write_json, write_safe_csv, write_table
from churnlens.exceptions import DataValidationError

__all__ = ["DemoOutputs", "run_demo"]

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DemoOutputs:
    """Where the demo wrote its outputs, and the summary it printed."""

    transactions: Path
    scores: Path
    at_risk: Path
    report: Path
    summary: Path
    document: dict[str, Any]


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    *,
    customers: int = 20_000,
    seed: int = 42,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> DemoOutputs:
    """Run the whole job on synthetic data and write every output under ``out_dir``."""
    from churnlens._loading import load_transactions
    from churnlens._pipeline import train
    from churnlens._rules import at_risk_list
    from churnlens._scoring import score_customers
    from churnlens._synthetic import generate_transactions

    say = progress or (lambda _m: None)
    settings = settings or Settings()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / file for name, file in (
        ("transactions", "transactions.parquet"), ("scores", "scores.parquet"),
        ("at_risk", "at-risk.csv"), ("report", "report.html"), ("summary", "summary.json"))}

    say(f"generating {customers:,} synthetic customers (seed {seed})")
    write_table(generate_transactions(customers, seed=seed), paths["transactions"])
    transactions, cleaning = load_transactions(paths["transactions"])
    if cleaning.last_day is None:  # the generator always writes purchases; say so if not
        raise DataValidationError(f"{paths['transactions']}: the generated data hold no "
                                  "purchase. Suggestion: ask for more customers.")
    as_of: dt.date = cleaning.last_day

    run = train(paths["transactions"], as_of=as_of, settings=settings,
                report_path=paths["report"], progress=say)
    say(f"scoring {len(run.fitted.features):,} customers at {as_of}")
    scored = score_customers(transactions, as_of, run.artifact, settings=settings.scoring,
                             progress=say)
    write_table(scored.scores, paths["scores"],
                metadata={"model": json.dumps(scored.summary["model"]), "as_of": str(as_of)})
    # the campaign list: active or recently lapsed, band high or medium, by value at risk
    at_risk = at_risk_list(scored.scores, horizon_days=run.artifact.horizon_days, top=100)
    write_safe_csv(at_risk, paths["at_risk"])

    document = {
        "as_of": str(as_of),
        "horizon_days": settings.horizon_days,
        "cleaning": cleaning.to_dict(),
        "training": run.summary(),
        "scoring": scored.summary,
        "outputs": {k: str(v) for k, v in paths.items()},
    }
    write_json(document, paths["summary"])
    return DemoOutputs(document=json.loads(paths["summary"].read_text()), **paths)


def headline(outputs: DemoOutputs) -> dict[str, Any]:
    """The numbers the demo prints, read back from the files it wrote."""
    doc = outputs.document
    scores = pd.read_parquet(outputs.scores)
    at_risk = pd.read_csv(outputs.at_risk, dtype={"customer_id": str})
    return {
        "backtest": doc["training"]["backtest"],
        "validation": doc["training"]["validation"],
        "registration": {k: doc["training"][k] for k in ("run_id", "model_version", "alias",
                                                          "promotion_reason")},
        "customers_scored": len(scores),
        "high_risk": int((scores["risk_band"] == "high").sum()),
        # over the active customers, the base of the customers lost too (the summary's)
        "value_at_risk_total": float(doc["scoring"]["value_at_risk_total"]),
        "active_customers": int(doc["scoring"]["active_customers"]),
        "predicted": doc["scoring"]["predicted"],
        "last_actual": doc["scoring"]["last_actual"],
        "at_risk_rows": len(at_risk),
        "at_risk_value": float(at_risk["value_at_risk"].sum()),
    }
