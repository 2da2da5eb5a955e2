"""``churnlens monitor``, ``GET /monitoring``: recorded predictions against what happened.

The scenario: a shop with years of history (``START``), a model trained at ``TRAINED``
(before any change), the base scored at ``SCORED`` one horizon later with the ledger on,
then ``monitor`` on the transactions up to ``SCORED + H`` (the horizon has closed). In the
changed world, from the day after training on, every customer's probability of dropping
out after a purchase is multiplied by ``FACTOR`` (``generate_transactions``'s
``shift_date``/``shift_dropout_factor``): fewer of the customers scored at ``SCORED``
come back than the model, trained on the old world, expects.

Every number ``monitor`` reports here is also computed in this file from the raw
transactions and the stored risks, by a reference written without the library.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlens import generate_transactions, load_transactions
from churnlens._config import Settings, load_config
from churnlens.cli import app

START = "2020-01-01"
TRAINED = dt.date(2024, 3, 31)
SCORED = dt.date(2024, 6, 30)
HORIZON = 91
END = SCORED + dt.timedelta(days=HORIZON)  # the scored horizon closes on the last day
SHIFT = TRAINED + dt.timedelta(days=1)
FACTOR = 5.0
CUSTOMERS = 1500
SEED = 11
# A small, fast model (as tests/api_support.py); one backtest step gives the model its
# own backtest AUC, the reference of the AUC alert.
FAST = {"mlflow.enabled": False, "backtest_steps": 1, "snapshots.count": 4,
        "model.n_estimators": 40, "model.min_child_samples": 20, "model.n_jobs": 1,
        "horizon_days": HORIZON}
print(f"test_monitoring: generate_transactions({CUSTOMERS}, seed={SEED}, start={START}, "
      f"end={END}, acquisition_power=1.0), trained {TRAINED}, scored {SCORED}, "
      f"shift x{FACTOR} from {SHIFT}")


@dataclasses.dataclass
class World:
    raw: pd.DataFrame
    csv: Path
    settings: Settings
    run_id: str
    entry: Any  # the LedgerEntry read back


def _settings(store: Path, **extra: Any) -> Settings:
    return load_config(overrides={**FAST, "mlflow.tracking_uri": f"sqlite:///{store}",
                                  **extra})


def _generate(seed: int, changed: bool, customers: int = CUSTOMERS) -> pd.DataFrame:
    shift = {"shift_date": SHIFT, "shift_dropout_factor": FACTOR} if changed else {}
    # a mature shop (years of history, steady acquisition): the customers scored look
    # like the training snapshots, so an unchanged world does not drift
    return generate_transactions(customers, seed=seed, start=START, end=END,
                                 acquisition_power=1.0, **shift)


def _record(raw: pd.DataFrame, settings: Settings) -> str:
    """Train at TRAINED, score at SCORED, record the scoring (the real ledger)."""
    from churnlens._ledger import record_scoring
    from churnlens._pipeline import train
    from churnlens._scoring import score_customers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LightGBM's deprecation notices
        run = train(raw, as_of=TRAINED, settings=settings)
    clean = load_transactions(raw).transactions
    result = score_customers(clean, SCORED, run.artifact, settings=settings.scoring)
    return record_scoring(result, run.artifact, settings, source="score")


def _world(root: Path, changed: bool) -> World:
    from churnlens._ledger import read_ledger

    root.mkdir(parents=True, exist_ok=True)
    settings = _settings(root / "mlflow.db")
    raw = _generate(SEED, changed)
    csv = root / "transactions.csv"
    raw.to_csv(csv, index=False)
    run_id = _record(raw, settings)
    (entry,) = read_ledger(settings.mlflow.tracking_uri,
                           experiment=settings.monitoring.experiment, kind="scoring")
    return World(raw=raw, csv=csv, settings=settings, run_id=run_id, entry=entry)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, World]:
    root = tmp_path_factory.mktemp("monitoring")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CHURNLENS_LEDGER", raising=False)
        return {"changed": _world(root / "changed", True),
                "unchanged": _world(root / "unchanged", False)}


def _monitor_cli(world: World, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["monitor", "--transactions", str(world.csv),
                                      "--tracking-uri", world.settings.mlflow.tracking_uri,
                                      *extra])
    return result.exit_code, result.stdout, result.stderr


# --- the reference: what happened, from the raw rows, without the library -------------


def _occasion_days(raw: pd.DataFrame) -> pd.DataFrame:
    """(customer_id, day) with a positive net amount that day (retention.md)."""
    day = pd.to_datetime(raw["timestamp"]).dt.normalize()
    net = raw.assign(day=day).groupby(["customer_id", "day"], as_index=False)["amount"].sum()
    return net.loc[net["amount"] > 0, ["customer_id", "day"]]


def _by_hand(raw: pd.DataFrame, risks: pd.DataFrame, as_of: dt.date, horizon: int
             ) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    occasions = _occasion_days(raw)
    t0, t1 = pd.Timestamp(as_of), pd.Timestamp(as_of + dt.timedelta(days=horizon))
    window_start = pd.Timestamp(as_of - dt.timedelta(days=horizon))
    bought = set(occasions.loc[(occasions["day"] > t0) & (occasions["day"] <= t1),
                               "customer_id"].astype(str))
    first = occasions.groupby("customer_id")["day"].min()
    acquired = {str(c) for c in first.index[first <= t0]}
    start_base = set(occasions.loc[(occasions["day"] > window_start)
                                   & (occasions["day"] <= t0), "customer_id"].astype(str))
    ids = risks["customer_id"].astype(str)
    stayed = ids.isin(bought).to_numpy()
    active = (risks["recency_days"] < horizon).to_numpy()
    churned = (~stayed).astype(np.float64)
    risk = risks["churn_risk"].to_numpy(dtype=np.float64)
    s = len(start_base)
    return {
        "S": s, "active_in_risks": int(active.sum()), "acquired": acquired,
        "cohort_retention": 100 * len(start_base & bought) / s,
        "cohort_retention_from_risks": 100 * int((active & stayed).sum()) / int(active.sum()),
        "crr": 100 * len(acquired & bought) / s,
        "auc": float(roc_auc_score(churned, risk)),
        "brier": float(np.mean((risk - churned) ** 2)),
    }


def _rate(document: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = document["entries"]
    return next(r for r in entry["realized"]["rates"] if r["rate"] == name)


# --- acceptance: the changed world alerts, the unchanged one does not -----------------


@pytest.mark.slow
def test_changed_world_alerts_and_exits_3(worlds: dict[str, World], tmp_path: Path) -> None:
    world = worlds["changed"]
    code, out, err = _monitor_cli(world, "--json", "--report", str(tmp_path / "m.html"))
    assert code == 3, err
    document = json.loads(out)
    kinds = {(a["kind"], a["subject"]) for a in document["alerts"]}
    print("changed world alerts:", [a["message"] for a in document["alerts"]])
    assert ("retention_outside_interval", "cohort_retention") in kinds
    cohort = _rate(document, "cohort_retention")
    assert cohort["covered"] is False
    assert cohort["actual"] < cohort["predicted_low"]  # fewer stayed than predicted
    alert = next(a for a in document["alerts"] if a["subject"] == "cohort_retention")
    assert alert["run_id"] == world.run_id and alert["as_of"] == SCORED.isoformat()
    assert alert["threshold"] == cohort["predicted_low"]
    assert "below the predicted 95% interval" in alert["message"]
    assert document["alert_count"] == len(document["alerts"])
    html = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "Tracking" in html
    # the table says the same, in words
    code, table, _ = _monitor_cli(world)
    assert code == 3
    assert "ALERT retention_outside_interval" in table and "NO" in table


@pytest.mark.slow
def test_unchanged_world_does_not_alert(worlds: dict[str, World]) -> None:
    code, out, err = _monitor_cli(worlds["unchanged"], "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["alerts"] == [] and document["alert_count"] == 0
    assert document["closed"] == 1 and document["open"] == 0
    (entry,) = document["entries"]
    assert all(r["covered"] for r in entry["realized"]["rates"])
    drift = entry["drift"]  # the latest entry: drift is measured, and below the alarm
    assert drift["recorded"] and drift["features"]
    assert not any(f["alert"] for f in drift["features"])
    code, table, _ = _monitor_cli(worlds["unchanged"])
    assert code == 0 and "no alerts." in table


# --- the numbers equal an independent computation --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["changed", "unchanged"])
def test_realized_numbers_equal_a_computation_by_hand(worlds: dict[str, World],
                                                      name: str) -> None:
    from churnlens._monitoring import monitor

    world = worlds[name]
    clean = load_transactions(world.csv).transactions
    report = monitor(clean, [world.entry], settings=world.settings)
    realized = report.to_dict()["entries"][0]["realized"]
    risks = world.entry.risks()
    hand = _by_hand(world.raw, risks, SCORED, HORIZON)
    # the scored customers are everyone acquired by the scoring date
    assert set(risks["customer_id"]) == hand["acquired"]
    assert realized["customers_evaluated"] == len(risks)
    assert realized["customers_not_in_data"] == 0
    assert realized["active_customers"] == hand["S"] == hand["active_in_risks"]
    cohort, crr = _rate(report.to_dict(), "cohort_retention"), _rate(report.to_dict(), "crr")
    assert cohort["actual"] == hand["cohort_retention"] == hand["cohort_retention_from_risks"]
    assert crr["actual"] == hand["crr"]
    assert realized["auc"] == hand["auc"]
    assert realized["brier"] == hand["brier"]
    # the prediction is the one recorded, untouched
    predicted = world.entry.summary["predicted"]
    assert cohort["predicted"] == predicted["cohort_retention"]
    assert cohort["predicted_low"] == predicted["cohort_retention_low"]
    # calibration and groups cover every customer once
    assert sum(b["customers"] for b in realized["calibration"]) == len(risks)
    assert sum(b["customers"] for b in realized["by_band"]) == len(risks)
    assert sum(s["customers"] for s in realized["by_segment"]) == len(risks)
    high = next(b for b in realized["by_band"] if b["risk_band"] == "high")
    rows = risks.loc[risks["risk_band"] == "high"]
    stayed = rows["customer_id"].isin(_bought(world.raw)).to_numpy()
    assert high["actual_churn_pct"] == pytest.approx(100 * (1 - stayed.mean()), abs=1e-9)
    assert high["predicted_churn_pct"] == pytest.approx(100 * rows["churn_risk"].mean(),
                                                        abs=1e-9)


def _bought(raw: pd.DataFrame) -> set[str]:
    occasions = _occasion_days(raw)
    window = (occasions["day"] > pd.Timestamp(SCORED)) & (occasions["day"] <= pd.Timestamp(END))
    return set(occasions.loc[window, "customer_id"].astype(str))


@pytest.mark.slow
def test_open_horizon_is_not_judged(worlds: dict[str, World]) -> None:
    """Data that stops before the horizon closes: no actual, no retention alert."""
    from churnlens._monitoring import monitor

    world = worlds["changed"]
    early = load_transactions(world.raw, as_of=END - dt.timedelta(days=10)).transactions
    report = monitor(early, [world.entry], settings=world.settings)
    (entry,) = report.to_dict()["entries"]
    assert entry["status"] == "open" and entry["days_to_close"] == 10
    assert entry["realized"] is None and entry["drift"]["recorded"]
    assert not [a for a in report.alerts if a.kind != "feature_drift"]
    assert math.isnan(report.tracking_table()["actual_cohort_retention"].iloc[0])


@pytest.mark.slow
def test_auc_and_drift_alerts_follow_their_thresholds(worlds: dict[str, World]) -> None:
    """The same entry alerts on AUC and on drift exactly when the thresholds say so."""
    from churnlens._monitoring import monitor

    world = worlds["changed"]
    clean = load_transactions(world.csv).transactions
    base = monitor(clean, [world.entry], settings=world.settings).to_dict()
    (entry,) = base["entries"]
    drop = entry["realized"]["backtest_auc"] - entry["realized"]["auc"]
    print(f"changed world: realized AUC {entry['realized']['auc']:.4f}, backtest "
          f"{entry['realized']['backtest_auc']:.4f}")
    assert drop > 0.002  # the changed world ranks worse than the backtest

    def kinds(**overrides: float) -> set[tuple[str, str]]:
        settings = world.settings.with_overrides(
            {f"monitoring.{k}": v for k, v in overrides.items()})
        return {(a.kind, a.subject) for a in monitor(clean, [world.entry],
                                                     settings=settings).alerts}

    assert ("auc_drop", "auc") in kinds(auc_drop_alert=drop - 0.001)
    assert ("auc_drop", "auc") not in kinds(auc_drop_alert=drop + 0.001)
    features = entry["drift"]["features"]
    used = [f for f in features if f["importance"]]
    unused = {f["feature"] for f in features if not f["importance"]}
    assert used and unused
    low = min(f["psi"] for f in used) / 2
    drifting = {s for k, s in kinds(psi_alert=low, importance_floor=1e-9)
                if k == "feature_drift"}
    # every feature the model uses is above the lowered threshold; the ones it does not
    # use (importance 0) never alert, whatever their PSI
    assert drifting == {f["feature"] for f in used}
    assert not drifting & unused
    above = max(f["psi"] for f in features) + 0.01
    assert not {k for k, _ in kinds(psi_alert=above, importance_floor=1e-9)
                } & {"feature_drift"}


# --- fast checks -------------------------------------------------------------------------


def test_empty_ledger_is_bad_input_exit_2(tmp_path: Path) -> None:
    csv = tmp_path / "tx.csv"
    generate_transactions(50, seed=1, start="2024-01-01", end="2024-06-30").to_csv(
        csv, index=False)
    store = tmp_path / "mlflow.db"
    result = CliRunner().invoke(app, ["monitor", "--transactions", str(csv),
                                      "--tracking-uri", f"sqlite:///{store}"])
    assert result.exit_code == 2
    assert "no scoring entries in the ledger" in result.stderr
    assert "Suggestion:" in result.stderr
    assert not store.exists()  # reading an empty ledger creates nothing


def test_monitor_refuses_no_entries() -> None:
    from churnlens._monitoring import monitor
    from churnlens.exceptions import ChurnlensError

    tx = generate_transactions(20, seed=1, start="2024-01-01", end="2024-03-31")
    with pytest.raises(ChurnlensError, match="no scoring entries"):
        monitor(load_transactions(tx).transactions, [], settings=load_config())


def test_tracking_plot_has_labelled_axes() -> None:
    from churnlens.plots import plot_tracking

    rows = [{"as_of": dt.date(2024, m, 28), "predicted_cohort_retention": 60.0 + m,
             "predicted_cohort_retention_low": 57.0 + m,
             "predicted_cohort_retention_high": 63.0 + m,
             "actual_cohort_retention": 50.0 if m == 3 else 61.0 + m,
             "predicted_crr": 70.0, "predicted_crr_low": 66.0, "predicted_crr_high": 74.0,
             "actual_crr": math.nan if m == 5 else 71.0} for m in (1, 3, 5)]
    figure = plot_tracking(pd.DataFrame(rows))
    cohort, crr = figure.axes
    assert cohort.get_ylabel() == "cohort retention (%)" and crr.get_ylabel() == "CRR (%)"
    assert "scoring date" in crr.get_xlabel()
    labels = [t.get_text() for t in cohort.get_legend().get_texts()]
    assert "actual (outside: alert)" in labels and "predicted 95% interval" in labels
    assert "actual (outside: alert)" not in [t.get_text()
                                             for t in crr.get_legend().get_texts()]


# --- the API answers the same document -------------------------------------------------


@pytest.mark.slow
def test_get_monitoring_equals_monitor_json(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``GET /monitoring`` of a served state equals ``monitor --json`` on the same data and
    store; ``/health`` carries the alert count."""
    from api_support import AS_OF, trained
    from fastapi.testclient import TestClient

    from churnlens._ledger import record_scoring
    from churnlens._scoring import score_customers
    from churnlens.api import build_state, create_app

    monkeypatch.delenv("CHURNLENS_LEDGER", raising=False)
    raw, clean, artifact = trained()
    store = tmp_path / "mlflow.db"
    settings = load_config(overrides={"mlflow.tracking_uri": f"sqlite:///{store}"})
    horizon = artifact.horizon_days
    closed_as_of = dt.date.fromisoformat(AS_OF) - dt.timedelta(days=horizon)
    for day in (closed_as_of, dt.date.fromisoformat(AS_OF)):  # one closed, one open
        result = score_customers(clean, day, artifact, allow_past=True)
        record_scoring(result, artifact, settings, source="score")
    csv = tmp_path / "transactions.csv"
    raw.to_csv(csv, index=False)
    cli = CliRunner().invoke(app, ["monitor", "--transactions", str(csv), "--tracking-uri",
                                   settings.mlflow.tracking_uri, "--json"])
    assert cli.exit_code in (0, 3), cli.stderr
    expected = json.loads(cli.stdout)
    assert expected["closed"] == 1 and expected["open"] == 1

    state = build_state(artifact, clean, settings=settings)
    with TestClient(create_app(lambda: state, initial=state)) as client:
        # the first /health does not wait: it starts the report in the background
        counts = [client.get("/health").json()["alerts"]]
        deadline = time.monotonic() + 120
        while counts[-1] is None and time.monotonic() < deadline:
            time.sleep(0.2)
            counts.append(client.get("/health").json()["alerts"])
        assert counts[-1] == expected["alert_count"], counts
        answer = client.get("/monitoring")  # (the report computed for /health)
        assert answer.status_code == 200, answer.text
        assert answer.json() == expected
    assert (cli.exit_code == 3) == bool(expected["alerts"])


def test_get_monitoring_without_settings_is_404() -> None:
    """A state built from a frame has no tracking URI: 404 and /health's alerts null."""
    from api_support import served
    from fastapi.testclient import TestClient

    from churnlens.api import create_app

    state = served()
    with TestClient(create_app(lambda: state, initial=state)) as client:
        answer = client.get("/monitoring")
        assert answer.status_code == 404
        assert "without settings" in answer.json()["detail"]
        assert client.get("/health").json()["alerts"] is None


def test_get_monitoring_with_an_empty_ledger_is_404(tmp_path: Path) -> None:
    """Settings but no scoring entry in the store: 404 naming the store, alerts null,
    and nothing created (reading an empty ledger makes no database)."""
    from api_support import served
    from fastapi.testclient import TestClient

    from churnlens.api import create_app

    store = tmp_path / "mlflow.db"
    settings = load_config(overrides={"mlflow.tracking_uri": f"sqlite:///{store}"})
    state = dataclasses.replace(served(), settings=settings)
    with TestClient(create_app(lambda: state, initial=state)) as client:
        answer = client.get("/monitoring")
        assert answer.status_code == 404
        assert "no scoring entries in the ledger" in answer.json()["detail"]
        assert client.get("/health").json()["alerts"] is None
    assert not store.exists()


# --- the false-alarm rate of the interval -----------------------------------------------


@pytest.mark.slow
def test_interval_alert_rate_over_20_unchanged_worlds(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 20 seeds of the unchanged scenario the predicted-interval alert fires at a rate
    consistent with a 95% interval.

    An entry alerts when its actual cohort retention or CRR falls outside its 95%
    interval. If the intervals hold their level, each rate misses with probability 0.05;
    the two rates of one entry move together, so an entry alerts with probability between
    0.05 and 0.10. With p = 0.10, P(at least 4 alerts of 20) = 0.133 and P(at least 5)
    = 0.043 (binomial): "at most 4 of 20" fails a correct model less than 5% of the time
    even at the upper end, while a model whose intervals cover only half the time
    (10 expected alerts of 20) passes with probability 0.006. The rate is printed and
    reported in docs/monitoring.md.
    """
    from churnlens._ledger import read_ledger
    from churnlens._monitoring import monitor

    monkeypatch.delenv("CHURNLENS_LEDGER", raising=False)
    store = tmp_path / "mlflow.db"
    outcomes = []
    for seed in range(100, 120):
        settings = _settings(store, **{"monitoring.experiment": f"rate-{seed}"})
        raw = _generate(seed, changed=False)
        _record(raw, settings)
        entries = read_ledger(settings.mlflow.tracking_uri,
                              experiment=settings.monitoring.experiment, kind="scoring")
        report = monitor(load_transactions(raw).transactions, entries, settings=settings)
        rates = report.to_dict()["entries"][0]["realized"]["rates"]
        interval = [a for a in report.alerts if a.kind == "retention_outside_interval"]
        outcomes.append({"seed": seed, "interval_alert": bool(interval),
                         "any_alert": bool(report.alerts),
                         **{f"{r['rate']}_{k}": r[k] for r in rates
                            for k in ("predicted_low", "actual", "predicted_high")}})
    table = pd.DataFrame(outcomes)
    fired = int(table["interval_alert"].sum())
    print(table.to_string(index=False))
    print(f"predicted-interval alert rate over 20 unchanged worlds: {fired}/20 = "
          f"{fired / 20:.0%}; any alert: {int(table['any_alert'].sum())}/20")
    assert fired <= 4
