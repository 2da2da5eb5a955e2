"""``score`` and ``at-risk``: the batch job's and the marketer's commands."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from churnlens.cli._app import Steps, app, handle_errors, stderr, stdout
from churnlens.cli._options import (
    ENGINES,
    OPTION_NAMES,
    AsOfOpt,
    ConfigOpt,
    ControlSeedOpt,
    EngineOpt,
    ExpectedHorizonOpt,
    InputFiles,
    MasterOpt,
    ModelOpt,
    NoLedgerOpt,
    OutTableOpt,
    ScoresHorizonOpt,
    TrackingOpt,
    TransactionInput,
    check_model_source,
    parse_day,
    positive_days,
    reads_inputs,
    reads_transactions,
    scoring_tables,
)
from churnlens.exceptions import ChurnlensError

if TYPE_CHECKING:
    import pandas as pd



@app.command()
@handle_errors
@reads_transactions
@reads_inputs
def score(
    source: TransactionInput,
    inputs: InputFiles,
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
    engine: EngineOpt = "duckdb",
    master: MasterOpt = "local[2]",
    tracking_uri: TrackingOpt = None,
    no_ledger: NoLedgerOpt = False,
) -> None:
    """Score every customer at an as-of date and write one row per customer, and record
    the scoring in the prediction ledger (the MLflow tracking store).

    A model trained with a customer table (--customers-file) or an event table
    (--events-file) needs the same kind of table to score, and refuses without it (exit
    2, nothing written); its scores also carry each customer's attributes at the as-of
    date, as columns named after them (docs/scoring.md). A table given to a model
    trained without it is ignored, with a warning."""
    from churnlens._io import TABLE_SUFFIXES, check_output_path, write_json, write_table
    from churnlens._ledger import ledger_enabled
    from churnlens._model_loader import load_model
    from churnlens._out_of_core import score_file_out_of_core
    from churnlens._validation import require_choice

    require_choice(engine, name="--engine", allowed=ENGINES)
    target = check_output_path(out, suffixes=TABLE_SUFFIXES,
                               inputs={**source.files(), **inputs.files()})
    summary_path = target.with_name(target.name + ".summary.json")
    as_of_date = parse_day(as_of)
    horizon_days = positive_days(horizon_days)
    check_model_source(model)
    inputs.check()
    settings = source.settings(**{"mlflow.tracking_uri": tracking_uri})
    transactions = source.path
    with Steps() as steps:
        steps(f"loading the model {model}")
        artifact = load_model(model, settings.mlflow, horizon_days=horizon_days)
        tables = _input_tables(inputs, artifact, settings, as_of_date, steps)
        if engine == "spark":
            from churnlens._spark_scoring import score_file_with_spark

            result = score_file_with_spark(
                transactions, as_of_date, artifact, settings=settings, master=master,
                allow_past=allow_past, reasons=not no_reasons, progress=steps,
                inputs=tables,
            )
            scored: object = result
            steps(f"writing {target}")
            summary = result.summary
            metadata = {"model": json.dumps(summary["model"], sort_keys=True),
                        "as_of": summary["as_of"], "horizon_days": str(artifact.horizon_days)}
            attributes = (summary.get("inputs") or {}).get("attributes")
            if attributes:  # as the DuckDB path: what at-risk --attribute filters on
                metadata["attributes"] = json.dumps(attributes)
            # a CSV is opened in spreadsheets: formula-like ids are neutralised there
            # (Parquet keeps every value exact)
            write_table(result.scores, target, metadata=metadata, spreadsheet_safe=True)
        else:
            # out of core (docs/scale.md): DuckDB reads the file(s) within the engine's
            # memory limit, the scores are written batch by batch, the same rows and
            # metadata as score_file + write_table (spreadsheet-safe CSV)
            streamed = score_file_out_of_core(
                transactions, as_of_date, artifact, target, settings=settings,
                allow_past=allow_past, reasons=not no_reasons, progress=steps,
                keep_risks=ledger_enabled(no_ledger, settings), inputs=tables)
            scored, summary = streamed, streamed.summary
        ledger_line, ledger_error = None, None
        summary["ledger_run_id"] = None
        if ledger_enabled(no_ledger, settings):
            steps("recording the scoring in the prediction ledger")
            ledger_line, ledger_error = _record_ledger(
                scored, artifact, settings, "score" if engine == "duckdb" else
                f"score --engine {engine}", summary, target)
        if target.suffix.lower() == ".csv":
            write_json(summary, summary_path)
    summary["output"] = str(target)
    if json_summary:
        typer.echo(json.dumps(summary, allow_nan=False))
    else:
        _print_summary(summary)
    if ledger_line is not None:
        (stderr() if json_summary else stdout()).print(ledger_line, highlight=False)
    if ledger_error is not None:
        stderr().print(f"error: {' '.join(ledger_error.split())}", markup=False,
                       highlight=False, emoji=False, soft_wrap=True)
        raise typer.Exit(1)  # the scores are written; the ledger failed (not bad input)


def _input_tables(inputs: InputFiles, artifact: Any, settings: Any, as_of: dt.date,
                  steps: Any) -> Any:
    """:func:`churnlens.cli._options.scoring_tables` (shared with ``serve``), its
    warnings printed as ``warning:`` lines."""
    return scoring_tables(inputs, artifact, settings, as_of, warn=_warn, progress=steps)


def _warn(note: str) -> None:
    stderr().print(f"warning: {note}.", markup=False, highlight=False, emoji=False)


def _record_ledger(result: object, artifact: object, settings: object, source: str,
                   summary: dict, target: Path) -> tuple[str | None, str | None]:
    """Record the scoring; ``summary["ledger_run_id"]`` is its run (None when it failed).

    Returns the line to print after the summary and the error, if the recording failed
    (the scores are written either way)."""
    from churnlens._ledger import record_scoring, recorded_message

    try:
        run_id = record_scoring(result, artifact, settings, source=source)
    except ChurnlensError as exc:
        return None, f"the scores were written to {target}, but {exc}"
    summary["ledger_run_id"] = run_id
    return recorded_message(run_id, settings), None


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
    # the pairing: one row per measure, each with its base and one-line definition
    rows = summary.get("pairing") or []
    for row in rows:
        table.add_row(row["rate"], _pct(row.get("predicted")),
                      f"{_pct(row.get('predicted_low'))} .. {_pct(row.get('predicted_high'))}",
                      _pct(row.get("last_actual")))
    out.print(table)
    for row in rows:
        if row.get("definition"):
            out.print(f"  {row['rate']} ({row.get('base', 'active')} base): "
                      f"{row['definition']}", highlight=False)
    covered: dict[str, list[str]] = {}
    for row in rows:
        if row.get("interval_covers"):
            covered.setdefault(row["interval_covers"], []).append(row["rate"])
    for covers, rates in covered.items():
        out.print(f"  95% interval of {', '.join(rates)}: {covers}", highlight=False)
    for warning in summary.get("model_warnings") or []:
        out.print(f"  note: {warning}", highlight=False)
    for warning in (summary.get("inputs") or {}).get("warnings") or []:
        out.print(f"  note: {warning}", highlight=False, markup=False)
    bands = summary["risk_bands"]
    out.print(f"risk bands (all {summary['customers_scored']:,} customers scored): high "
              f"{bands['high']:,}, medium {bands['medium']:,}, low {bands['low']:,}",
              highlight=False)
    # one base for both totals: the active customers (summary["base"])
    out.print(f"of the {summary['active_customers']:,} active customers (a purchase in the "
              f"last {summary['horizon_days']} days): expected customers lost "
              f"{summary['expected_customers_lost']:,.0f}; value at risk "
              f"{summary['value_at_risk_total']:,.2f}", highlight=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


@app.command("at-risk")
@handle_errors
def at_risk(
    scores: Annotated[Path, typer.Option("--scores", "-s", help="Scores written by churnlens "
                                         "score.")],
    out: OutTableOpt,
    every: Annotated[bool, typer.Option("--all", help="Every scored customer, by churn risk "
                                        "(no campaign rule, no default size).")] = False,
    win_back: Annotated[bool, typer.Option("--win-back", help="The customers already gone "
                                           "(no purchase in two horizons), by value at "
                                           "risk.")] = False,
    top: Annotated[int | None, typer.Option("--top", help="Keep the first N (default 500; "
                                            "every row with --all or "
                                            "--cost-per-contact).")] = None,
    min_risk: Annotated[float | None, typer.Option("--min-risk", help="Only risk >= R.")
                        ] = None,
    segment: Annotated[str | None, typer.Option("--segment", help="Only this RFM segment.")
                       ] = None,
    band: Annotated[str | None, typer.Option("--band", help="Only this risk band "
                                             "(high, medium, low).")] = None,
    attribute: Annotated[list[str] | None, typer.Option(
        "--attribute", help="Only the customers whose attribute has this value, as "
        "NAME:VALUE (--attribute channel:web), for scores of a model trained with a "
        "customer table: NAME is one of its categorical attributes, as the scores record "
        "them (not any column: --band and --segment filter those); repeat it: values of "
        "one attribute are alternatives, different attributes must all hold.")] = None,
    sort: Annotated[str | None, typer.Option("--sort", help="churn_risk or value_at_risk "
                                             "(default value_at_risk; churn_risk with "
                                             "--all); expected_profit (the default) with "
                                             "--cost-per-contact.")] = None,
    horizon_days: ScoresHorizonOpt = None,
    control_fraction: Annotated[float | None, typer.Option(
        "--control-fraction", help="Hold back this share of each risk band as a random "
        "control group (0 < F < 1): column group (treatment or control) and list_id; "
        "read out with churnlens campaign.")] = None,
    seed: ControlSeedOpt = 0,
    cost_per_contact: Annotated[float | None, typer.Option(
        "--cost-per-contact", help="Size the list by profit: the cost of one contact "
        "(>= 0, currency of the data). Keeps the customers whose expected profit, "
        "churn_risk x save rate x expected_value x margin - cost, is positive, by "
        "expected profit (column expected_profit; no default size, --top caps it). "
        "Needs --save-rate.")] = None,
    save_rate: Annotated[float | None, typer.Option(
        "--save-rate", help="With --cost-per-contact: the share of would-be churners a "
        "contact keeps, in (0, 1].")] = None,
    margin: Annotated[float | None, typer.Option(
        "--margin", help="With --cost-per-contact: the share of spend that is profit, in "
        "(0, 1] (default 1: values are spend).")] = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    no_ledger: NoLedgerOpt = False,
) -> None:
    """Write the customers worth a call: active or recently lapsed, band high or medium,
    by value at risk, the first 500 (--all: every customer; --win-back: those already
    gone). Spreadsheet-safe CSV. With --cost-per-contact and --save-rate, the list keeps
    the customers of that kind worth contacting at that cost (positive expected profit),
    by expected profit, and its size and expected total profit are printed. With
    --control-fraction, a random control group is held back in each risk band and the
    list is recorded in the prediction ledger."""
    from churnlens._io import TABLE_SUFFIXES, check_output_path, write_table
    from churnlens._rules import (
        AT_RISK_FLAGS,
        CAMPAIGN_BANDS,
        LAPSED_HORIZONS,
        at_risk_list,
        profit_terms,
    )

    if every and win_back:
        raise ChurnlensError("--all and --win-back ask for two different lists. Suggestion: "
                             "pass one of them (neither: the campaign list).")
    kind = "all" if every else "win-back" if win_back else "campaign"
    terms = profit_terms(cost_per_contact, save_rate, margin,
                         names=("--cost-per-contact", "--save-rate", "--margin"))
    target = check_output_path(out, suffixes=TABLE_SUFFIXES, inputs={"--scores": scores})
    horizon_days = positive_days(horizon_days)
    frame = _read_scores(scores)
    wanted = _attribute_filters(attribute, scores)
    horizon = None if kind == "all" else _scores_horizon(scores, horizon_days)
    chosen = at_risk_list(frame, kind=kind, horizon_days=horizon, top=top,
                          min_risk=min_risk, segment=segment, band=band, sort=sort,
                          profit=terms, attributes=wanted, names=AT_RISK_FLAGS)
    profitable = len(chosen)
    if terms is not None and top is not None and len(chosen) == top:
        profitable = len(at_risk_list(frame, kind=kind, horizon_days=horizon,
                                      min_risk=min_risk, segment=segment, band=band,
                                      sort=sort, profit=terms, attributes=wanted,
                                      names=AT_RISK_FLAGS))
    drawn = None
    if control_fraction is not None:
        drawn = _ControlGroup.draw(chosen, scores, fraction=control_fraction, seed=seed,
                                   horizon_days=horizon or horizon_days, config=config,
                                   tracking_uri=tracking_uri, no_ledger=no_ledger)
        chosen = drawn.frame
    metadata = None if drawn is None else drawn.metadata
    if terms is not None:
        metadata = {**(metadata or {}), **{k: str(v) for k, v in terms.as_dict().items()},
                    "expected_profit_total": str(float(chosen["expected_profit"].sum()))}
    write_table(chosen, target, spreadsheet_safe=True, metadata=metadata)
    say = stderr()
    if drawn is not None:
        drawn.report(say, len(frame), target)
    if terms is not None:
        _report_profit(say, chosen, terms, kind=kind, target=target, top=top,
                       profitable=profitable)
        return
    if kind == "all":
        say.print(f"wrote {len(chosen):,} of {len(frame):,} customers to {target}",
                  highlight=False)
        return
    gone_days = LAPSED_HORIZONS * int(horizon or 0)
    if kind == "campaign":
        gone = int((frame["recency_days"] >= gone_days).sum())
        say.print(f"wrote {len(chosen):,} customers worth a call to {target}: last purchase "
                  f"less than {gone_days} days ago, risk band {' or '.join(CAMPAIGN_BANDS)}, "
                  f"by value at risk. {gone:,} of {len(frame):,} customers have not bought "
                  f"for {gone_days} days or more: they are on the win-back list "
                  "(--win-back).", highlight=False)
    else:
        say.print(f"wrote {len(chosen):,} win-back customers to {target}: no purchase for "
                  f"{gone_days} days or more, by value at risk.", highlight=False)


def _attribute_filters(given: list[str] | None, scores: Path
                       ) -> dict[str, set[str | None]] | None:
    """``--attribute NAME:VALUE`` options as ``{column of the scores: values}`` (``None``:
    none), by the API's rule (:func:`churnlens._rules.attribute_filters`): NAME is one
    of the model's categorical attributes, as the scores' metadata records them (the
    Parquet metadata, or a CSV's ``.summary.json``: ``inputs.attributes``)."""
    from churnlens._rules import attribute_filters

    if not given:
        return None
    recorded = _scores_attributes(scores)
    categorical = {a["name"]: a["column"] for a in recorded if a.get("categorical")}
    numeric = {a["name"] for a in recorded if not a.get("categorical")}
    return attribute_filters(given, categorical, numeric, where="--attribute",
                             example="--attribute channel:web")


def _scores_attributes(path: Path) -> list[dict[str, Any]]:
    """The attribute columns the scores record (``[]``: none, or scores written before
    they were recorded)."""
    from churnlens._io import read_table_metadata

    if not path.is_file():
        return []  # the scores' own check says so
    try:
        if path.suffix.lower() == ".parquet":
            text = read_table_metadata(path).get("attributes")
            recorded = json.loads(text) if text else []
        else:
            summary = path.with_name(path.name + ".summary.json")
            recorded = ((json.loads(summary.read_text(encoding="utf-8")).get("inputs") or {})
                        .get("attributes") or []) if summary.is_file() else []
    except (OSError, ValueError) as exc:
        raise ChurnlensError(f"{path}: cannot read which columns of the scores are "
                             f"attributes ({exc}). Suggestion: score again with churnlens "
                             "score.") from exc
    return [a for a in recorded if isinstance(a, dict) and "name" in a and "column" in a]


def _report_profit(say: Any, chosen: pd.DataFrame, terms: Any, *, kind: str, target: Path,
                   top: int | None, profitable: int) -> None:
    """Say the size and the expected total profit of a list sized by profit."""
    which = {"all": "customers", "campaign": "campaign customers (last purchase less than "
             "two horizons ago, risk band high or medium)",
             "win-back": "win-back customers (no purchase in two horizons)"}[kind]
    total = float(chosen["expected_profit"].sum())
    say.print(f"wrote {len(chosen):,} {which} worth contacting to {target}: expected profit "
              f"of a contact = churn_risk x {terms.save_rate:g} (save rate) x expected_value "
              f"x {terms.margin:g} (margin) - {terms.cost_per_contact:g} (cost) > 0, by "
              "expected profit.", highlight=False)
    if profitable > len(chosen):
        say.print(f"cut by --top {top}: {profitable:,} customers have a positive expected "
                  "profit.", highlight=False)
    say.print(f"list size {len(chosen):,}; expected total profit {total:,.2f} if every "
              "customer on it is contacted (currency of the data).", highlight=False)
    if "group" in chosen:
        treated = chosen.loc[chosen["group"] == "treatment", "expected_profit"]
        say.print(f"treatment group {len(treated):,}; its expected total profit "
                  f"{float(treated.sum()):,.2f}.", highlight=False)


def _scores_horizon(path: Path, given: int | None) -> int:
    """The model horizon the scores were made with: the Parquet metadata, or a CSV's
    ``.summary.json``, or ``--horizon-days``; refused when they disagree or none says."""
    from churnlens._io import read_table_metadata

    stated = None
    try:
        if path.suffix.lower() == ".parquet":
            stated = read_table_metadata(path).get("horizon_days")
        else:
            summary = path.with_name(path.name + ".summary.json")
            if summary.is_file():
                stated = json.loads(summary.read_text(encoding="utf-8")).get("horizon_days")
    except (OSError, ValueError) as exc:
        raise ChurnlensError(f"{path}: cannot read the horizon the scores were made with "
                             f"({exc}). Suggestion: pass --horizon-days.") from exc
    stated = int(stated) if stated not in (None, "") else None
    if stated is not None and given is not None and stated != given:
        raise ChurnlensError(f"{path}: the scores were made with a {stated}-day model, not "
                             f"{given} days. Suggestion: drop --horizon-days.")
    horizon = stated if stated is not None else given
    if horizon is None:
        raise ChurnlensError(f"{path}: the scores do not state the model's horizon (no "
                             "Parquet metadata or .summary.json beside the CSV), which the "
                             "campaign list needs. Suggestion: pass --horizon-days, or --all "
                             "for every customer.")
    return horizon


def _read_scores(path: Path) -> pd.DataFrame:
    from churnlens._io import read_table_file

    # ids as text, exactly ("NA" and "" are ids too)
    return read_table_file(path, option="--scores", what="a scores file",
                           written_by="churnlens score")


@dataclasses.dataclass(frozen=True)
class _ControlGroup:
    """A campaign list with its control group drawn, and its ledger entry to record.

    ``settings`` is None when the ledger is off (``--no-ledger``, ``CHURNLENS_LEDGER=off``
    or ``monitoring.ledger: false``).
    """

    frame: pd.DataFrame
    list_id: str
    fraction: float
    seed: int
    card: dict[str, Any]
    horizon_days: int | None
    settings: Any

    @classmethod
    def draw(cls, chosen: pd.DataFrame, scores: Path, *, fraction: float, seed: int,
             horizon_days: int | None, config: Path | None, tracking_uri: str | None,
             no_ledger: bool) -> _ControlGroup:
        """Draw the control group (stratified by risk band) and check, before anything
        is written, that the ledger can record the list."""
        from churnlens._campaign import assign_control_group, campaign_list_id
        from churnlens._config import load_config
        from churnlens._ledger import ledger_enabled

        marked = assign_control_group(chosen, fraction, seed=seed)
        list_id = campaign_list_id(marked["customer_id"], fraction=fraction, seed=seed)
        marked["list_id"] = list_id
        card = _scores_card(scores)
        horizon = horizon_days if horizon_days is not None else card.get("horizon_days")
        settings = load_config(config, {"mlflow.tracking_uri": tracking_uri},
                               option_names=OPTION_NAMES)
        enabled = ledger_enabled(no_ledger, settings)
        if enabled and horizon is None:
            raise ChurnlensError(
                f"{scores}: the scores do not state the model's horizon, which the ledger "
                "records with the campaign list. Suggestion: pass --horizon-days, or "
                "--no-ledger to skip the ledger.")
        return cls(marked, list_id, float(fraction), int(seed), card,
                   None if horizon is None else int(horizon), settings if enabled else None)

    @property
    def metadata(self) -> dict[str, Any]:
        """What a Parquet list stores of itself (``churnlens`` schema metadata)."""
        return {"list_id": self.list_id, "control_fraction": self.fraction,
                "seed": self.seed, "as_of": self.card.get("as_of"),
                "horizon_days": self.horizon_days,
                "model": json.dumps(self.card.get("model") or {}, sort_keys=True)}

    def report(self, say: Any, scored: int, target: Path) -> None:
        """Say what was held back, then record the list in the ledger (exit 1 when the
        recording fails: the list is written, the ledger is not bad input)."""
        groups = self.frame["group"]
        controls = int((groups == "control").sum())
        say.print(f"control group: {controls:,} of the {len(groups):,} customers held back "
                  f"({self.fraction:g} of each risk band, seed {self.seed}); list id "
                  f"{self.list_id}. Contact only the treatment rows; read the campaign out "
                  f"with churnlens campaign --list {target} --transactions FILE --start "
                  "DATE.",
                  highlight=False)
        if self.settings is None:
            return
        from churnlens._ledger import record_list, recorded_message

        try:
            entry = _scores_entry(self.card, scored, self.settings)
            model = self.card.get("model") or None
            run_id = record_list(
                self.frame, list_id=self.list_id, control_fraction=self.fraction,
                seed=self.seed, scores_entry=entry, settings=self.settings,
                source="at-risk", horizon_days=self.horizon_days, model=model,
                as_of=_as_date(self.card.get("as_of")))
        except ChurnlensError as exc:
            say.print(f"error: the list was written, but {' '.join(str(exc).split())}",
                      markup=False, highlight=False, emoji=False, soft_wrap=True)
            raise typer.Exit(1) from exc
        say.print(recorded_message(run_id, self.settings), highlight=False)


def _as_date(value: Any) -> dt.date | None:
    """A date the scores file states, or None when it states none or an unreadable one."""
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _scores_card(path: Path) -> dict[str, Any]:
    """What a scores file says of itself: ``as_of``, ``horizon_days``, ``model`` (a dict)
    and, for a CSV's ``.summary.json``, ``ledger_run_id``; empty when it says nothing."""
    from churnlens._io import read_table_metadata

    try:
        if path.suffix.lower() == ".parquet":
            card = dict(read_table_metadata(path))
        else:
            summary = path.with_name(path.name + ".summary.json")
            card = (json.loads(summary.read_text(encoding="utf-8")) if summary.is_file()
                    else {})
    except (OSError, ValueError):
        return {}  # the list does not need it; the ledger then says what it lacks
    model = card.get("model")
    if isinstance(model, str):
        try:
            model = json.loads(model)
        except ValueError:
            model = None
    horizon = card.get("horizon_days")
    return {"as_of": card.get("as_of"), "model": model if isinstance(model, dict) else None,
            "horizon_days": int(horizon) if horizon not in (None, "") else None,
            "ledger_run_id": card.get("ledger_run_id")}


def _scores_entry(card: dict[str, Any], scored: int, settings: Any) -> Any:
    """The ledger entry of the scoring the list was drawn from: the CSV summary's run
    id, else the latest scoring of the same as-of date, horizon, model run and size."""
    from churnlens._ledger import read_ledger

    entries = read_ledger(settings.mlflow.tracking_uri,
                          experiment=settings.monitoring.experiment, kind="scoring")
    run_id = card.get("ledger_run_id")
    if run_id:
        matches = [e for e in entries if e.run_id == run_id]
    else:
        model_run = (card.get("model") or {}).get("run_id")
        matches = [e for e in entries
                   if str(e.as_of) == str(card.get("as_of"))[:10]
                   and e.horizon_days == card.get("horizon_days")
                   and e.model.get("run_id") == model_run and e.customers == scored]
    return matches[-1] if matches else None
