"""``campaign``: treatment against control after a campaign on an at-risk list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from churnlens.cli._app import app, handle_errors, print_fitted, stdout
from churnlens.cli._options import (
    BootstrapSeedOpt,
    CampaignStartOpt,
    HorizonOpt,
    JsonOpt,
    TransactionInput,
    parse_day,
    positive_days,
    reads_transactions,
)


@app.command()
@handle_errors
@reads_transactions
def campaign(
    source: TransactionInput,
    list_file: Annotated[Path, typer.Option("--list", "-l", help="The campaign list written "
                                            "by churnlens at-risk --control-fraction.")],
    start: CampaignStartOpt,
    horizon_days: HorizonOpt = None,
    json_out: JsonOpt = False,
    seed: BootstrapSeedOpt = 0,
) -> None:
    """Did the campaign keep anyone? Retention and revenue per customer of the treated
    against the control group in (start, start + H], the difference with its 95%
    interval, and the smallest effect the groups could detect."""
    from churnlens._campaign import analyse_campaign, read_campaign_list

    start_date = parse_day(start, flag="--start")
    # the window's length: --horizon-days, else the horizon a Parquet list was drawn
    # with (its metadata), else the config's horizon_days
    horizon_days = positive_days(horizon_days) or _list_horizon(list_file)
    settings = source.settings(horizon_days=horizon_days)
    members = read_campaign_list(list_file)
    transactions = source.load(settings=settings).transactions
    result = analyse_campaign(members, transactions, start_date, settings.horizon_days,
                              seed=seed)
    document = result.to_dict()
    if json_out:
        typer.echo(json.dumps(document, allow_nan=False))
        return
    _print_result(document)


def _list_horizon(path: Path) -> int | None:
    """The model horizon a Parquet list states in its metadata (None for a CSV, or when
    it states none or the file cannot be read: read_campaign_list says why)."""
    from churnlens._io import read_table_metadata

    if path.suffix.lower() != ".parquet" or not path.is_file():
        return None
    try:
        stated = read_table_metadata(path).get("horizon_days")
        return int(stated) if stated not in (None, "") else None
    except (OSError, ValueError, TypeError):
        return None


def _print_result(doc: dict[str, Any]) -> None:
    from rich.table import Table

    out = stdout()
    window = doc["window"]
    out.print(f"campaign list {doc['list_id'] or '-'} (scored {doc['as_of'] or '-'}): "
              f"purchases in ({window['start']}, {window['end']}], "
              f"{window['horizon_days']} days", highlight=False)
    groups = Table(title="treatment vs control")
    for column in ("group", "customers", "retained", "retention", "revenue per customer"):
        groups.add_column(column, justify="left" if column == "group" else "right")
    for name, group in doc["groups"].items():
        groups.add_row(name, f"{group['customers']:,}", f"{group['retained']:,}",
                       f"{group['retention']:.1f}%", f"{group['revenue_per_customer']:,.2f}")
    print_fitted(out, groups)
    level = f"{doc['confidence']:.0%}"
    effects = Table(title=f"effect of the campaign (treatment - control), {level} intervals")
    for column in ("measure", "estimate", f"{level} interval"):
        effects.add_column(column, justify="left" if column == "measure" else "right")
    rows = (("retention (points)", doc["retention_difference"], "+.1f"),
            ("customers kept", doc["incremental_customers"], "+,.0f"),
            ("revenue per customer", doc["revenue_difference"], "+,.2f"),
            ("revenue", doc["incremental_revenue"], "+,.2f"))
    for label, value, spec in rows:
        effects.add_row(label, format(value["estimate"], spec),
                        f"{format(value['low'], spec)} .. {format(value['high'], spec)}")
    print_fitted(out, effects)
    out.print(doc["verdict"], highlight=False)
    out.print(doc["revenue_verdict"], highlight=False)
    mde = doc["minimum_detectable_effect"]
    if mde["retention_points"] is None:
        out.print("these groups are too small to detect any retention effect.",
                  highlight=False)
    else:
        out.print(f"smallest effect these groups detect (80% power, 5% two-sided): "
                  f"{mde['retention_points']:.1f} points of retention (about "
                  f"{mde['customers']:,.0f} customers)"
                  + ("" if mde["revenue"] is None else
                     f", {mde['revenue_per_customer']:,.2f} of revenue per customer"),
                  highlight=False)
    for note in doc["notes"]:
        out.print(f"  note: {note}", highlight=False)
