"""The demo base (``generate_transactions(20000, seed=42)``) scored with a model trained on
it, and CDNOW scored the same way: trained once per test process, shared by the test
modules that check what marketing reads (reasons, campaign lists, totals)."""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import pandas as pd

DEMO_SEED = 42
DEMO_CUSTOMERS = 20_000
DEMO_AS_OF = "2024-12-31"
CDNOW_AS_OF = "1998-03-31"
QUICK = {"mlflow.enabled": False, "backtest_steps": 0}


@functools.lru_cache(maxsize=2)
def scored_base(name: str) -> tuple[Any, Any, pd.DataFrame]:
    """``(artifact, ScoreResult, transactions)`` of ``"demo"`` or ``"cdnow"``: the model
    trained at the as-of date on the data, then the whole base scored at that date."""
    import churnlens
    from churnlens._config import load_config
    from churnlens._pipeline import train
    from churnlens._scoring import score_customers

    if name == "demo":
        print(f"demo data: generate_transactions({DEMO_CUSTOMERS}, seed={DEMO_SEED})")
        raw = churnlens.generate_transactions(DEMO_CUSTOMERS, seed=DEMO_SEED)
        as_of = DEMO_AS_OF
    else:
        from churnlens.datasets import load_cdnow

        raw, as_of = load_cdnow(), CDNOW_AS_OF
    transactions = churnlens.load_transactions(raw).transactions
    artifact = train(transactions, as_of=as_of, settings=load_config(overrides=QUICK)).artifact
    return artifact, score_customers(transactions, as_of, artifact), transactions


# --- an oracle for reason texts, written from docs/scoring.md, not from the code -------

# Words that name a model quantity or a feature, never shown to a marketer.
MODEL_WORDS = re.compile(r"BG/NBD|bgnbd|p_alive|p_purchase|chance of a purchase|likely "
                         r"still active|probability|log-odds|\b[a-z]+_[a-z_]+\b")
# Loyalty signals: never a cause of risk.
LOYALTY_WORDS = re.compile(r"repeat purchases?\b|purchases so far|in total|customer for "
                           r"\d|spent [\d,.]+ in|\d+ purchases (?!in the last)")


def _whole(value: float) -> float:
    return float(np.round(np.round(value, 6)))


def check_reason(text: str, row: pd.Series, horizon_days: int) -> str:
    """The kind of a reason text, after checking that what it says is true of the
    customer (``row``: their features) and pushes risk up; AssertionError otherwise."""
    assert not MODEL_WORDS.search(text), f"names a model quantity: {text!r}"
    assert not LOYALTY_WORDS.search(text), f"cites loyalty: {text!r}"
    frequency, recency = int(row["frequency"]), int(row["recency_days"])
    tenure = int(row["tenure_days"])
    if found := re.fullmatch(r"usually buys every (\d+) days, silent for (\d+)", text):
        gap, silent = (int(g) for g in found.groups())
        assert frequency >= 2 and silent == recency, (text, frequency, recency)
        assert gap == _whole(row["gap_mean_days"]) and silent > gap, (text, row["gap_mean_days"])
        return "silence"
    if found := re.fullmatch(r"only one purchase, (\d+) days? ago", text):
        assert frequency == 1 and int(found.group(1)) == recency, (text, frequency, recency)
        return "silence"
    if found := re.fullmatch(r"(\d+) purchases? in the last (\d+) days, usually (\d+)", text):
        recent, w, usual = (int(g) for g in found.groups())
        assert recent == row[f"occasions_{w}d"] and 1 <= recent < usual, text
        assert tenure + 1 >= 2 * w, (text, tenure)
        expected = (frequency - recent) / (tenure + 1 - w) * w
        assert abs(usual - expected) <= 0.5 + 1e-9, (text, expected)
        return "slowing"
    if found := re.fullmatch(r"spend down (\d+)% in the last (\d+) days vs the (\d+) days "
                             r"before", text):
        pct, w1, days = (int(g) for g in found.groups())
        w2 = w1 + days
        recent, both = row[f"spend_{w1}d"], row[f"spend_{w2}d"]
        assert tenure + 1 >= w2 and both - recent > 0, (text, tenure, recent, both)
        expected = 100 * (1 - (recent / w1) / ((both - recent) / days))
        assert pct >= 20 and abs(pct - expected) <= 0.5 + 1e-6, (text, expected)
        return "spend"
    if found := re.fullmatch(r"average basket down (\d+)% in the last (\d+) days", text):
        pct, w = (int(g) for g in found.groups())
        expected = 100 * (1 - row[f"basket_trend_{w}d"])
        assert pct >= 20 and abs(pct - expected) <= 0.5 + 1e-6, (text, expected)
        return "spend"
    if found := re.fullmatch(r"usually buys only every (\d+) days, longer than the (\d+)-day "
                             r"horizon", text):
        gap, horizon = (int(g) for g in found.groups())
        assert horizon == horizon_days and frequency >= 2, text
        assert gap == _whole(row["gap_mean_days"]) and gap >= horizon, text
        return "rhythm"
    if found := re.fullmatch(r"last gap between purchases (\d+) days, usually (\d+)", text):
        last, gap = (int(g) for g in found.groups())
        assert last == _whole(row["gap_last_days"]) and gap == _whole(row["gap_mean_days"])
        assert last > gap, text
        return "rhythm"
    if found := re.fullmatch(r"first purchase only (\d+) days? ago", text):
        assert int(found.group(1)) == tenure < horizon_days and frequency >= 2, text
        return "new"
    if found := re.fullmatch(r"refunds of ([\d,]+\.\d\d) so far", text):
        shown = float(found.group(1).replace(",", ""))
        assert shown > 0 and abs(shown - row["refund_total"]) <= 0.005 + 1e-6, text
        return "refunds"
    raise AssertionError(f"not a documented reason text: {text!r}")


def check_all_reasons(scores: pd.DataFrame, features: pd.DataFrame, horizon_days: int
                      ) -> dict[str, int]:
    """Check every reason of every customer (same rows in both frames); count by kind."""
    assert scores["customer_id"].tolist() == features["customer_id"].tolist()
    counts: dict[str, int] = {}
    columns = ["reason_1", "reason_2", "reason_3"]
    for i, texts in enumerate(scores[columns].itertuples(index=False)):
        shown = [t for t in texts if t]
        assert list(texts[:len(shown)]) == shown, f"a gap in the reasons: {texts}"
        kinds = [check_reason(t, features.iloc[i], horizon_days) for t in shown]
        assert len(set(kinds)) == len(kinds), f"one kind twice: {texts}"
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    return counts
