"""Benchmark: what the richer inputs are worth, measured by backtest (issue 21's acceptance).

Each experiment generates data with a known effect (``churnlens._synthetic``, fixed
seeds), loads it through churnlens' loaders, and runs the public backtest with its
ablation table (``backtest(..., inputs=InputTables(...), ablation=True)``): the churnlens
model with every input group (``all``), without each group, and with the transactions
only (``none``), on the same held-out horizons.

- ``signal``: the ``channel`` attribute multiplies dropout and ``email_open`` events fade
  before a dropout (``generate_inputs(input_effects=True)``). Rule: AUC with the inputs
  (attributes and events) at least 0.02 above without them, at every as-of date.
- ``noise``: the same tables and the transactions' optional columns (order id, quantity,
  category, channel, discount), all pure noise (``input_effects=False``). Rule: AUC with
  them at most 0.002 below without them, and predicted retention (per customer and per
  cohort) moved by at most 0.5 points, at every as-of date.
- ``season``: transactions only, a strong yearly cycle (``season_strength=3``) over more
  than three years, as-of dates before the year-end peak (its horizon covers the peak)
  and after it. The calendar group is on by itself (the history spans a year plus the
  horizon). Rule: the mean |predicted - actual cohort retention| with the calendar
  features at most half of the one without them (both reported; the per-customer
  predicted retention is reported beside it).

The calendar group is switched off (``calendar=False``) in ``signal`` and ``noise``, so
that ``all`` versus ``none`` is exactly the attributes, events (and details) versus
nothing.

``regimes``: bench/bench_quality.py's regimes (issue 15) at their as-of dates, the model
with the calendar group (on by itself where the history allows) against the same model
without it: churnlens' AUC and |predicted - actual cohort retention| each way, and whether
the calendar hurt (AUC lower by more than 0.002, or the level error larger by more than
0.5 points). Reported, not a rule: the lead decides the default from it.

Run from the repository root::

    .venv/bin/python bench/bench_inputs.py --quick              # small sizes
    .venv/bin/python bench/bench_inputs.py                      # the sizes of docs/inputs.md
    .venv/bin/python bench/bench_inputs.py --only signal noise  # some experiments
    .venv/bin/python bench/bench_inputs.py --only regimes --quick

Results go to ``bench/results/inputs.json`` and ``inputs.md`` (``--out``); the markdown
is printed; progress goes to stderr. Exit status 1 when a rule fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import inspect
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
EXPERIMENTS = ("signal", "noise", "season", "regimes")
RULE_EXPERIMENTS = ("signal", "noise", "season")
# issue 21's acceptance thresholds
SIGNAL_MIN_GAIN = 0.02
NOISE_MAX_AUC_DROP = 0.002
NOISE_MAX_RETENTION_MOVE = 0.5  # points
SEASON_MAX_ERROR_RATIO = 0.5
# What counts as "the calendar hurt" in the regimes table (reported, not a rule).
HURT_AUC = 0.002
HURT_LEVEL = 0.5  # points
# The transactions' optional columns, as generate_inputs(details=True) names them.
DETAIL_COLUMNS = {"order_col": "order_id", "quantity_col": "quantity",
                  "category_col": "category", "channel_col": "channel",
                  "discount_col": "discount"}

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One acceptance experiment: its data and where it is backtested.

    Attributes
    ----------
    name
        ``signal``, ``noise`` or ``season``.
    description
        One line for the tables.
    seed
        Seed of the generator.
    customers, quick_customers
        Customers simulated in the full and the ``--quick`` run.
    generator
        Keyword arguments of ``generate_inputs`` besides ``n_customers`` and ``seed``.
    as_of_dates
        The as-of dates backtested.
    tables
        Whether the customer and event tables are given (``signal``, ``noise``).
    details
        Whether the transactions' optional columns are generated and loaded.
    calendar
        The backtest's ``calendar`` argument (None: on when the history allows).
    """

    name: str
    description: str
    seed: int
    customers: int
    quick_customers: int
    generator: dict[str, Any]
    as_of_dates: tuple[str, ...]
    tables: bool
    details: bool
    calendar: bool | None


EXPERIMENT_SPECS: dict[str, Experiment] = {
    "signal": Experiment(
        "signal", "channel and email opens drive churn (attributes + events)", 2101,
        10_000, 3_000, {"input_effects": True}, ("2024-03-31", "2024-06-30"),
        tables=True, details=False, calendar=False),
    "noise": Experiment(
        "noise", "attributes, events and transaction details are pure noise", 2102,
        10_000, 3_000, {"input_effects": False}, ("2024-03-31", "2024-06-30"),
        tables=True, details=True, calendar=False),
    "season": Experiment(
        "season", "strong yearly cycle (season_strength 3), 2022-01 .. 2025-04", 2103,
        10_000, 4_000,
        {"start": "2022-01-01", "end": "2025-04-30", "season_strength": 3.0},
        ("2024-09-30", "2024-12-31"), tables=False, details=False, calendar=None),
}


@dataclasses.dataclass(frozen=True)
class Data:
    """Clean transactions and the input tables of one experiment."""

    transactions: pd.DataFrame
    inputs: Any  # churnlens._input_features.InputTables


def experiment_data(experiment: Experiment, customers: int) -> Data:
    """Generate an experiment's data and load it through churnlens' loaders.

    Examples
    --------
    >>> data = experiment_data(EXPERIMENT_SPECS["noise"], 200)
    >>> {"category", "channel", "discount"} <= set(data.transactions.columns)
    True
    """
    from churnlens import load_transactions
    from churnlens._input_features import InputTables
    from churnlens._inputs import load_customers, load_events
    from churnlens._synthetic import generate_inputs

    generated = generate_inputs(customers, seed=experiment.seed, details=experiment.details,
                                **experiment.generator)
    raw = generated.transactions
    columns: dict[str, Any] = dict(DETAIL_COLUMNS) if experiment.details else {}
    if not experiment.details:
        raw = raw[["customer_id", "timestamp", "amount"]]
    transactions, _ = load_transactions(raw, **columns)
    if not experiment.tables:
        return Data(transactions, InputTables())
    customers_table = load_customers(generated.customers, valid_from_col="valid_from")
    events_table = load_events(generated.events, value_col="value")
    return Data(transactions, InputTables(customers=customers_table, events=events_table))


# --- one backtest, read as {as_of: {variant: metrics}} ------------------------------------

METRIC_KEYS = ("auc", "predicted_retention", "actual_retention",
               "predicted_cohort_retention", "actual_cohort_retention")


def ablation(transactions: pd.DataFrame, inputs: Any, as_of_dates: Sequence[str],
             settings: Any, *, calendar: bool | None, say: Say = _stderr
             ) -> dict[str, dict[str, dict[str, Any]]]:
    """Backtest with the inputs and their ablation; ``{as_of: {variant: metrics}}``.

    ``variant`` is ``all`` (every group the model learned), ``without <group>`` and
    ``none`` (the transactions only), as ``BacktestResult.ablation_table()`` gives them;
    ``groups`` says which groups each variant had. Where the backtest has no ablation
    (an older churnlens) it is run twice, with and without the inputs (``all``, ``none``).
    """
    from churnlens._training import backtest

    parameters = inspect.signature(backtest).parameters
    if "inputs" not in parameters:
        raise SystemExit("this churnlens' backtest takes no inputs: nothing to measure.")
    keywords: dict[str, Any] = {"inputs": inputs}
    if "calendar" in parameters:
        keywords["calendar"] = calendar
    if "ablation" in parameters:
        result = backtest(transactions, list(as_of_dates), settings, ablation=True,
                          progress=_quiet(say), **keywords)
        return _read_ablation(result)
    say("no ablation in this backtest: running it with and without the inputs")
    with_inputs = backtest(transactions, list(as_of_dates), settings, **keywords)
    off: dict[str, Any] = {"calendar": False} if "calendar" in parameters else {}
    without = backtest(transactions, list(as_of_dates), settings, inputs=None, **off)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for variant, result in (("all", with_inputs), ("none", without)):
        for run in result.runs:
            metrics = run["models"]["churnlens"]
            out.setdefault(str(run["as_of"]), {})[variant] = {
                **{key: _float(metrics.get(key)) for key in METRIC_KEYS}, "groups": None}
    return out


def _read_ablation(result: Any) -> dict[str, dict[str, dict[str, Any]]]:
    table = result.ablation_table()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in table.to_dict("records"):
        out.setdefault(str(pd.Timestamp(row["as_of"]).date()), {})[str(row["variant"])] = {
            **{key: _float(row.get(key)) for key in METRIC_KEYS},
            "groups": row.get("groups"), "input_features": row.get("input_features")}
    for run in result.runs:  # a date whose model used no input group has no ablation rows
        metrics = run["models"]["churnlens"]
        variants = out.setdefault(str(run["as_of"]), {"all": {
            **{key: _float(metrics.get(key)) for key in METRIC_KEYS}, "groups": "",
            "input_features": 0}})
        # what the full model's blend selection chose (BG/NBD alone uses no feature)
        selection = getattr(run["fitted"].churnlens, "selection_", None) or {}
        variants["all"]["chosen"] = selection.get("chosen")
    return out


def _quiet(say: Say) -> Say:
    def progress(message: str) -> None:
        if message.startswith("backtest at"):
            say(f"  {message}")
    return progress


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _without(variants: dict[str, dict[str, Any]], group: str) -> dict[str, Any]:
    """The row without ``group``: ``without <group>``, or ``none`` when that is the same
    model (the ablation leaves it out when ``group`` is the only one)."""
    return variants.get(f"without {group}", variants["none"])


# --- the rules -----------------------------------------------------------------------------

def check_signal(rows: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """AUC with the inputs >= AUC without them + 0.02 at every date."""
    dates = {as_of: {"auc_with": v["all"]["auc"], "auc_without": v["none"]["auc"],
                     "gain": v["all"]["auc"] - v["none"]["auc"]}
             for as_of, v in rows.items()}
    worst = min(d["gain"] for d in dates.values())
    return {"dates": dates, "worst_gain": worst, "threshold": SIGNAL_MIN_GAIN,
            "pass": bool(worst >= SIGNAL_MIN_GAIN)}


def check_noise(rows: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """AUC drop <= 0.002 and retention moved <= 0.5 points at every date."""
    dates = {}
    for as_of, v in rows.items():
        with_, without = v["all"], v["none"]
        dates[as_of] = {
            "auc_with": with_["auc"], "auc_without": without["auc"],
            "auc_drop": without["auc"] - with_["auc"],
            "retention_move": abs(with_["predicted_retention"]
                                  - without["predicted_retention"]),
            "cohort_retention_move": abs(with_["predicted_cohort_retention"]
                                         - without["predicted_cohort_retention"]),
        }
    worst_drop = max(d["auc_drop"] for d in dates.values())
    worst_move = max(max(d["retention_move"], d["cohort_retention_move"])
                     for d in dates.values())
    return {"dates": dates, "worst_auc_drop": worst_drop, "worst_retention_move": worst_move,
            "thresholds": {"auc_drop": NOISE_MAX_AUC_DROP,
                           "retention_move": NOISE_MAX_RETENTION_MOVE},
            "pass": bool(worst_drop <= NOISE_MAX_AUC_DROP
                         and worst_move <= NOISE_MAX_RETENTION_MOVE)}


def check_season(rows: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Mean |predicted - actual cohort retention| with the calendar <= half without it."""
    dates = {}
    for as_of, v in rows.items():
        with_, without = v["all"], _without(v, "calendar")
        dates[as_of] = {
            "calendar_on": "calendar" in str(with_.get("groups") or "calendar"),
            "actual_cohort_retention": with_["actual_cohort_retention"],
            "predicted_with": with_["predicted_cohort_retention"],
            "predicted_without": without["predicted_cohort_retention"],
            "error_with": abs(with_["predicted_cohort_retention"]
                              - with_["actual_cohort_retention"]),
            "error_without": abs(without["predicted_cohort_retention"]
                                 - without["actual_cohort_retention"]),
            "retention_error_with": abs(with_["predicted_retention"]
                                        - with_["actual_retention"]),
            "retention_error_without": abs(without["predicted_retention"]
                                           - without["actual_retention"]),
            "auc_with": with_["auc"], "auc_without": without["auc"],
        }
    mean_with = sum(d["error_with"] for d in dates.values()) / len(dates)
    mean_without = sum(d["error_without"] for d in dates.values()) / len(dates)
    return {"dates": dates, "mean_error_with": mean_with, "mean_error_without": mean_without,
            "ratio": mean_with / mean_without if mean_without > 0 else math.inf,
            "threshold": SEASON_MAX_ERROR_RATIO,
            "pass": bool(mean_with <= SEASON_MAX_ERROR_RATIO * mean_without)}


CHECKS = {"signal": check_signal, "noise": check_noise, "season": check_season}


def run_experiment(experiment: Experiment, settings: Any, *, quick: bool,
                   customers: int | None = None, as_of_dates: Sequence[str] | None = None,
                   say: Say = _stderr) -> dict[str, Any]:
    """Generate, backtest with the ablation, and check one experiment's rule
    (``customers`` and ``as_of_dates`` override the experiment's own)."""
    began = time.perf_counter()
    n = customers or (experiment.quick_customers if quick else experiment.customers)
    dates = list(as_of_dates or experiment.as_of_dates)
    data = experiment_data(experiment, n)
    say(f"{experiment.name}: {n:,} customers, {len(data.transactions):,} rows")
    rows = ablation(data.transactions, data.inputs, dates, settings,
                    calendar=experiment.calendar, say=say)
    check = CHECKS[experiment.name](rows)
    say(f"{experiment.name}: {'pass' if check['pass'] else 'FAIL'} "
        f"({time.perf_counter() - began:.0f} s)")
    return {"experiment": experiment.name, "description": experiment.description,
            "customers": n, "seed": experiment.seed, "as_of_dates": dates,
            "ablation": rows, "check": check, "seconds": time.perf_counter() - began}


# --- the calendar over bench_quality's regimes ---------------------------------------------

def run_regimes(settings: Any, *, quick: bool, customers: int | None = None,
                only: Sequence[str] | None = None, say: Say = _stderr) -> list[dict[str, Any]]:
    """bench_quality's regimes, churnlens with the calendar group (auto) and without it."""
    sys.path.insert(0, str(HERE))
    import bench_quality as quality

    from churnlens._input_features import InputTables

    cases = []
    for regime in quality.REGIMES:
        if only and regime.name not in only:
            continue
        transactions = quality.regime_transactions(regime, customers=customers,
                                                   seed=quality.DEFAULT_SEED, quick=quick)
        first_day = transactions["timestamp"].min().date()
        dates = [quality.resolve_as_of(spec, first_day, settings.horizon_days)
                 for spec in regime.as_of_dates]
        say(f"regimes: {regime.name}, {transactions['customer_id'].nunique():,} customers")
        rows = ablation(transactions, InputTables(), dates, settings, calendar=None, say=say)
        for as_of, variants in sorted(rows.items()):
            with_ = variants["all"]
            groups = with_.get("groups")
            on = groups is None or "calendar" in str(groups)
            without = _without(variants, "calendar") if on else with_
            error_with = abs(with_["predicted_cohort_retention"]
                             - with_["actual_cohort_retention"])
            error_without = abs(without["predicted_cohort_retention"]
                                - without["actual_cohort_retention"])
            auc_change = with_["auc"] - without["auc"]
            cases.append({
                "regime": regime.name, "as_of": as_of, "calendar_on": on,
                "chosen": with_.get("chosen"),
                "history_days": (dt.date.fromisoformat(as_of) - first_day).days,
                "auc_with": with_["auc"], "auc_without": without["auc"],
                "auc_change": auc_change,
                "error_with": error_with, "error_without": error_without,
                "error_change": error_with - error_without,
                "hurt": bool(on and (auc_change < -HURT_AUC
                                     or error_with - error_without > HURT_LEVEL)),
            })
    return cases


# --- output --------------------------------------------------------------------------------

def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def markdown(document: dict[str, Any]) -> str:
    """The results as markdown tables (one per experiment, then the regimes)."""
    size = "quick" if document["quick"] else "full"
    lines = [f"# Richer inputs: acceptance by backtest ({size})", "",
             "Model selection (model.select_blend): "
             + ("on, the default: BG/NBD alone when the blend does not rank better on the "
                "held-out cutoff, and then no input feature is used"
                if document.get("select_blend", True) else
                "off (--force-blend): the blend always, the input features always used")
             + "; seasonal level (model.season_level): "
             + ("on (--season-level)" if document.get("season_level") else "off"),
             ""]
    for result in document["experiments"]:
        check, name = result["check"], result["experiment"]
        lines += [f"## {name}: {result['description']}",
                  "",
                  f"{result['customers']:,} customers, seed {result['seed']}: "
                  f"**{'pass' if check['pass'] else 'FAIL'}**", ""]
        if name == "signal":
            lines += ["| as-of | AUC with inputs | AUC without | gain (>= 0.02) |",
                      "|---|---|---|---|"]
            lines += [f"| {d} | {_f(v['auc_with'], 4)} | {_f(v['auc_without'], 4)} | "
                      f"{v['gain']:+.4f} |" for d, v in check["dates"].items()]
        elif name == "noise":
            lines += ["| as-of | AUC with | AUC without | AUC drop (<= 0.002) | retention "
                      "moved, points (<= 0.5) | cohort retention moved |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {d} | {_f(v['auc_with'], 4)} | {_f(v['auc_without'], 4)} | "
                      f"{v['auc_drop']:+.4f} | {_f(v['retention_move'], 2)} | "
                      f"{_f(v['cohort_retention_move'], 2)} |"
                      for d, v in check["dates"].items()]
        else:
            lines += ["| as-of | actual cohort retention | predicted with calendar | "
                      "without | error with | error without | retention error with / "
                      "without | AUC with / without |", "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {d} | {_f(v['actual_cohort_retention'], 2)} | "
                      f"{_f(v['predicted_with'], 2)} | {_f(v['predicted_without'], 2)} | "
                      f"{_f(v['error_with'], 2)} | {_f(v['error_without'], 2)} | "
                      f"{_f(v['retention_error_with'], 2)} / "
                      f"{_f(v['retention_error_without'], 2)} | {_f(v['auc_with'], 4)} / "
                      f"{_f(v['auc_without'], 4)} |" for d, v in check["dates"].items()]
            lines += ["", f"Mean error with the calendar {check['mean_error_with']:.2f} points, "
                      f"without {check['mean_error_without']:.2f}: ratio "
                      f"{check['ratio']:.2f} (<= {SEASON_MAX_ERROR_RATIO})."]
        lines += ["", "Ablation (churnlens, per variant; chosen: what the full model's "
                  "selection used):", "",
                  "| as-of | variant | groups | chosen | AUC | predicted retention | actual | "
                  "predicted cohort retention | actual |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for as_of, variants in result["ablation"].items():
            for variant, m in variants.items():
                lines.append(
                    f"| {as_of} | {variant} | {m.get('groups') or '-'} | "
                    f"{m.get('chosen') or ''} | {_f(m['auc'], 4)} | "
                    f"{_f(m['predicted_retention'], 2)} | {_f(m['actual_retention'], 2)} | "
                    f"{_f(m['predicted_cohort_retention'], 2)} | "
                    f"{_f(m['actual_cohort_retention'], 2)} |")
        lines.append("")
    if document.get("regimes"):
        lines += ["## The calendar group over bench_quality's regimes", "",
                  "churnlens with the calendar group (on when the history spans a year plus "
                  "the horizon) and without it; error = |predicted - actual cohort "
                  "retention| in points; hurt = AUC lower by more than "
                  f"{HURT_AUC} or error larger by more than {HURT_LEVEL} points.", "",
                  "| regime | as-of | history days | calendar | chosen | AUC with | AUC without | "
                  "error with | error without | hurt |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in document["regimes"]:
            lines.append(
                f"| {c['regime']} | {c['as_of']} | {c['history_days']} | "
                f"{'on' if c['calendar_on'] else 'off (short history)'} | "
                f"{c.get('chosen') or ''} | "
                f"{_f(c['auc_with'], 4)} | {_f(c['auc_without'], 4)} | "
                f"{_f(c['error_with'], 2)} | {_f(c['error_without'], 2)} | "
                f"{'**yes**' if c['hurt'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the experiments, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, metavar="NAME",
                        help=f"run only these ({', '.join(EXPERIMENTS)})")
    parser.add_argument("--customers", type=int, default=None,
                        help="customers per experiment (and regime) instead of the defaults")
    parser.add_argument("--regimes", nargs="+", default=None, metavar="REGIME",
                        help="with 'regimes': only these of bench_quality's regimes")
    parser.add_argument("--config", type=Path, default=None,
                        help="a churnlens YAML config (default: the library's defaults)")
    parser.add_argument("--force-blend", action="store_true",
                        help="model.select_blend off: the blend (trees + logistic) always, "
                        "never BG/NBD alone, so the input features are always used")
    parser.add_argument("--season-level", action="store_true",
                        help="model.season_level on: with the calendar features, a seasonal "
                        "shift of the chosen log-odds (docs/training.md)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help="folder of inputs.json and inputs.md (default: bench/results)")
    args = parser.parse_args(argv)
    if args.customers is not None and args.customers < 1:
        parser.error("--customers must be a positive whole number")

    from churnlens._config import load_config

    # BG/NBD's fits on short histories warn on every cutoff; the tables say what matters.
    warnings.filterwarnings("ignore", message="BG/NBD fit did not fully converge")
    settings = load_config(args.config)
    model_changes: dict[str, Any] = {}
    if args.force_blend:
        model_changes["select_blend"] = False
    if args.season_level:
        model_changes["season_level"] = True
    if model_changes:
        settings = settings.model_copy(update={
            "model": settings.model.model_copy(update=model_changes)})
    chosen = args.only or list(EXPERIMENTS)
    began = time.perf_counter()
    experiments = [run_experiment(EXPERIMENT_SPECS[name], settings, quick=args.quick,
                                  customers=args.customers)
                   for name in RULE_EXPERIMENTS if name in chosen]
    regimes = (run_regimes(settings, quick=args.quick, customers=args.customers,
                           only=args.regimes) if "regimes" in chosen else [])
    from churnlens._io import json_ready

    document = json_ready({
        "benchmark": "inputs", "quick": args.quick, "horizon_days": settings.horizon_days,
        "select_blend": settings.model.select_blend,
        "season_level": getattr(settings.model, "season_level", False),
        "experiments": experiments, "regimes": regimes,
        "passed": all(e["check"]["pass"] for e in experiments),
        "seconds": time.perf_counter() - began,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": str(args.config) if args.config else "defaults",
        "run_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })
    text = markdown(document)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = (("_quick" if args.quick else "") + ("_blend" if args.force_blend else "")
              + ("_season_level" if args.season_level else ""))
    (args.out / f"inputs{suffix}.json").write_text(json.dumps(document, indent=1) + "\n")
    (args.out / f"inputs{suffix}.md").write_text(text + "\n")
    print(text)
    print(f"wrote {args.out / f'inputs{suffix}.json'}, {args.out / f'inputs{suffix}.md'}")
    return 0 if document["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
