"""The seasonal clock (churnlens._season; docs/training.md, "The seasonal clock").

BG/NBD's horizon becomes ``H * s``, ``s`` a ratio-to-moving-average seasonal index of
the daily purchase occasions one year earlier, when the calendar input group is on.

Data: ``generate_transactions(1500, seed=SEED, 2022-01-01..2024-12-31,
season_strength=3)``; snapshots at 8 monthly cutoffs ending ``AS_OF - HORIZON``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from snapshot_support import labelled_history

import churnlens
from churnlens._model import ChurnModel
from churnlens._scorer import load_scorer
from churnlens._season import (
    SEASON_MAX,
    SEASON_MIN,
    daily_occasions,
    horizons_of,
    season_index,
    season_index_of_counts,
    season_profile,
)

SEED = 21
AS_OF = dt.date(2024, 9, 30)
HORIZON = 91
print(f"test_season_clock: generate_transactions(1500, seed={SEED}, season_strength=3), "
      f"as of {AS_OF}")


# --------------------------------------------------------------------------- the index

def _series(first: str, counts: list[int]) -> pd.Series:
    return pd.Series(counts, index=pd.date_range(first, periods=len(counts), freq="D",
                                                 name="day"), dtype="int64")


def test_season_index_golden() -> None:
    # H = 2, date = 2022-01-03: t0 = 2021-01-03 (position 2). before = days (t0-2, t0]
    # = positions 1, 2 -> 2 + 4 = 6; target = positions 3, 4 -> 18; after = positions
    # 5, 6 -> 6; s = 18 / ((6 + 6) / 2) = 3.
    counts = [10, 2, 4, 9, 9, 3, 3] + [1] * 400
    daily = _series("2021-01-01", counts)
    assert season_index(daily, dt.date(2022, 1, 3), 2) == 3.0
    # one day earlier: positions 0..5 are read: before = 10 + 2, target = 4 + 9,
    # after = 9 + 3 -> s = 13 / 12
    assert season_index(daily, dt.date(2022, 1, 2), 2) == pytest.approx(13 / 12)
    # two days earlier: the window before would start before the history: exactly 1
    assert season_index(daily, dt.date(2022, 1, 1), 2) == 1.0
    # clipped
    assert season_index(_series("2021-01-01", [0, 1, 1, 90, 90, 1, 1] + [1] * 400),
                        dt.date(2022, 1, 3), 2) == SEASON_MAX
    assert season_index(_series("2021-01-01", [0, 50, 50, 0, 0, 50, 50] + [1] * 400),
                        dt.date(2022, 1, 3), 2) == SEASON_MIN
    # no occasion in the neighbouring windows: 1; the series ends before the last day
    # needed (position 6): 1; it ends on it: the same s as the whole series
    assert season_index(_series("2021-01-01", [0, 0, 0, 5, 5, 0, 0] + [1] * 400),
                        dt.date(2022, 1, 3), 2) == 1.0
    assert season_index(_series("2021-01-01", counts[:6]), dt.date(2022, 1, 3), 2) == 1.0
    assert season_index(_series("2021-01-01", counts[:7]), dt.date(2022, 1, 3), 2) == 3.0


def test_daily_occasions_golden() -> None:
    tx = pd.DataFrame({
        "customer_id": ["a", "a", "b", "b", "c", "a"],
        "timestamp": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 18:00",
                                     "2024-01-01 10:00", "2024-01-03 10:00",
                                     "2024-01-03 11:00", "2024-01-09 10:00"]),
        # b's 2024-01-03 nets to a refund: no occasion that day
        "amount": [5.0, -2.0, 1.0, -3.0, 4.0, 7.0],
    })
    daily = daily_occasions(tx, dt.date(2024, 1, 5))
    assert list(daily.index.date) == [dt.date(2024, 1, d) for d in range(1, 6)]
    assert daily.tolist() == [2, 0, 1, 0, 0]


def test_an_occasion_is_a_positive_net_in_exact_money_units(tmp_path: object) -> None:
    """0.1 + 0.2 - 0.3 is 5.5e-17 in floats but 0 in exact units: not an occasion, on
    every engine path (the core features' rule, _engine.is_occasion_sql)."""
    from churnlens._loading_sql import load_transactions_sql

    tx = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b"],
        "timestamp": pd.to_datetime(["2024-01-02 09:00", "2024-01-02 10:00",
                                     "2024-01-02 11:00", "2024-01-01 10:00"]),
        "amount": [0.1, 0.2, -0.3, 1.0],
    })
    assert 0.1 + 0.2 - 0.3 > 0  # the float sum would count it
    until = dt.date(2024, 1, 3)
    assert daily_occasions(tx, until).tolist() == [1, 0, 0]
    path = tmp_path / "tx.csv"  # type: ignore[operator]
    tx.to_csv(path, index=False)
    clean = load_transactions_sql(path)
    try:
        assert daily_occasions(clean, until).tolist() == [1, 0, 0]
    finally:
        clean.connection.close()


@pytest.mark.parametrize("h", [30, 91, 400])
def test_counts_after_the_date_never_change_s(h: int) -> None:
    """A stored profile may run past a row's date: s reads the days up to it only."""
    rng = np.random.default_rng(h)
    first = dt.date(2020, 1, 1)
    counts = rng.poisson(10, size=365 * 4).astype("int64")
    for offset in (365 + h + 5, 365 + 2 * h + 3, 3 * 365, 4 * 365 - 40):
        date = first + dt.timedelta(days=offset)
        changed = counts.copy()
        changed[offset + 1:] = rng.poisson(200, size=len(counts) - offset - 1)
        assert season_index_of_counts(changed, first, date, h) == season_index_of_counts(
            counts[:offset + 1], first, date, h), (h, date)
        assert season_index_of_counts(changed, first, date, h) == season_index_of_counts(
            counts, first, date, h), (h, date)


def _reference(daily: pd.Series, date: dt.date, h: int) -> float:
    """M1's formula (/tmp/m1/opt.py), a loop over dates."""
    first, last = daily.index[0].date(), daily.index[-1].date()
    t0 = date - dt.timedelta(days=365)

    def occ(a: dt.date, b: dt.date) -> float:
        total, day = 0.0, a + dt.timedelta(days=1)
        while day <= b:
            total += float(daily.loc[pd.Timestamp(day)])
            day += dt.timedelta(days=1)
        return total

    end = t0 + dt.timedelta(days=2 * h if 2 * h <= 365 else h)
    if t0 - dt.timedelta(days=h) + dt.timedelta(days=1) < first or end > min(last, date):
        return 1.0
    target = occ(t0, t0 + dt.timedelta(days=h))
    before = occ(t0 - dt.timedelta(days=h), t0)
    after = (occ(t0 + dt.timedelta(days=h), t0 + dt.timedelta(days=2 * h))
             if 2 * h <= 365 else before)
    if before + after == 0:
        return 1.0
    return float(np.clip(target / ((before + after) / 2), SEASON_MIN, SEASON_MAX))


def test_season_index_matches_a_loop_reference() -> None:
    rng = np.random.default_rng(5)
    for trial in range(12):
        n = int(rng.integers(300, 700))
        counts = rng.poisson(rng.uniform(0.5, 20), size=n)
        counts[rng.random(n) < 0.1] = 0
        daily = _series(str(dt.date(2020, 1, 1) + dt.timedelta(days=int(rng.integers(0, 300)))),
                        counts.tolist())
        h = int(rng.choice([1, 7, 30, 91, 200]))
        for _ in range(15):
            date = daily.index[0].date() + dt.timedelta(days=int(rng.integers(0, n + 30)))
            assert season_index(daily, date, h) == pytest.approx(
                _reference(daily, date, h), rel=1e-12), (trial, date, h)


def test_days_after_the_date_change_nothing() -> None:
    tx = churnlens.load_transactions(churnlens.generate_transactions(
        300, seed=4, start="2022-01-01", end="2024-06-30", season_strength=3)).transactions
    until = dt.date(2023, 9, 30)
    daily = daily_occasions(tx, until)
    assert daily.index[-1].date() == until
    # transactions after `until` (changed at will) change no count
    later = tx["timestamp"] > pd.Timestamp(until) + pd.Timedelta(days=1)
    doubled = pd.concat([tx, tx.loc[later]]).sort_values("timestamp").reset_index(drop=True)
    pd.testing.assert_series_equal(daily_occasions(doubled, until), daily)
    full = daily_occasions(tx, dt.date(2024, 6, 30))
    for date in pd.date_range("2023-04-01", until, freq="11D").date:
        # s at a date reads the days on or before it only
        assert season_index(full, date, HORIZON) == season_index(
            daily_occasions(tx, date), date, HORIZON)
    # the profile a model keeps gives the same s as the whole series, near its as-of date
    profile = season_profile(full, until, HORIZON)
    assert len(profile["counts"]) == 365 + 2 * HORIZON
    for date in pd.date_range(until - dt.timedelta(days=HORIZON), until, freq="7D").date:
        assert season_index_of_counts(
            profile["counts"], dt.date.fromisoformat(profile["first_day"]), date,
            HORIZON) == season_index(full, date, HORIZON)


# --------------------------------------------------------------------------- the model

@dataclasses.dataclass
class Data:
    snapshots: pd.DataFrame
    labels: np.ndarray
    features: pd.DataFrame
    daily: pd.Series
    history: pd.DataFrame


@pytest.fixture(scope="module")
def data() -> Data:
    history, snapshots = labelled_history(churnlens.generate_transactions(
        1500, seed=SEED, start="2022-01-01", end="2024-12-31", season_strength=3),
        AS_OF, HORIZON)
    labels = snapshots["churned"].astype(np.int64).to_numpy()
    features = (churnlens.compute_features(history, AS_OF)
                .sort_values("customer_id").reset_index(drop=True))
    return Data(snapshots=snapshots, labels=labels, features=features,
                daily=daily_occasions(history, AS_OF), history=history)


def _fit(data: Data, daily: pd.Series | None) -> ChurnModel:
    return ChurnModel(horizon_days=HORIZON, random_state=3, select_blend=False,
                      min_child_samples=50, n_estimators=120).fit(
        data.snapshots, data.labels, cutoff="cutoff", reference=data.features,
        season_daily=daily)


@pytest.fixture(scope="module")
def clocked(data: Data) -> ChurnModel:
    return _fit(data, data.daily)


@pytest.fixture(scope="module")
def plain(data: Data) -> ChurnModel:
    return _fit(data, None)


def test_the_clock_moves_bgnbd_and_is_recorded(data: Data, clocked: ChurnModel,
                                               plain: ChurnModel) -> None:
    clock = clocked.season_clock_
    assert clock["used"] and clock["horizon_days"] == HORIZON
    assert len(clock["training_cutoffs"]) == 8
    s = season_index(data.daily, AS_OF, HORIZON)
    assert clock["as_of"] == round(s, 4) and abs(s - 1.0) > 0.05
    assert not hasattr(plain, "season_clock_") and plain.season_profile_ is None
    # the scoring offset is BG/NBD with the horizon H * s at the features' as-of date
    expected = 1.0 - clocked.bgnbd_.predict_churn_risk(data.features)
    assert not np.allclose(clocked.bgnbd_offset(data.features),
                           plain.bgnbd_offset(data.features))
    from churnlens._bgnbd import _features_to_data, bgnbd_prob_purchase_in

    x, t_x, T = _features_to_data(data.features)
    seasonal = bgnbd_prob_purchase_in(clocked.bgnbd_.params_, HORIZON * s, x, t_x, T)
    offset = clocked.bgnbd_offset(data.features)
    from churnlens._scorer import logit

    np.testing.assert_array_equal(offset, logit(1.0 - seasonal))
    assert not np.allclose(seasonal, expected)
    # and the card / scorer meta carry s (self-knowledge), the scorer the counts
    assert clocked.to_scorer()._meta["season_clock"]["as_of"] == clock["as_of"]


def test_the_scorer_gives_the_clocked_models_numbers_bit_for_bit(
        data: Data, clocked: ChurnModel, tmp_path: object) -> None:
    scorer = clocked.to_scorer()
    assert scorer.season_profile_ == clocked.season_profile_
    reread = load_scorer(scorer.save(tmp_path / "scorer.npz").read_bytes())  # type: ignore[operator]
    later = data.features.assign(as_of=pd.Timestamp(AS_OF + dt.timedelta(days=45)))
    mixed = pd.concat([data.features.iloc[:300], later.iloc[300:600]], ignore_index=True)
    for frame in (data.features, later, mixed, data.features.drop(columns="as_of")):
        for form in (scorer, reread):
            np.testing.assert_array_equal(form.predict_proba(frame),
                                          clocked.predict_proba(frame))
            np.testing.assert_array_equal(form.bgnbd_offset(frame),
                                          clocked.bgnbd_offset(frame))
            np.testing.assert_array_equal(form.explain(frame).contributions,
                                          clocked.explain(frame).contributions)
    # another scoring date, another s: the rows of one date share it
    h = horizons_of(mixed, clocked.season_profile_, HORIZON, clocked.as_of_)
    assert isinstance(h, np.ndarray) and len(np.unique(h[:300])) == 1
    assert h[0] != h[-1]


def test_s_equal_to_one_gives_the_scores_of_a_model_without_the_clock(
        data: Data, plain: ChurnModel) -> None:
    # a daily series too short to reach a year back: s = 1 at every cutoff and date
    short = data.daily.iloc[-200:]
    model = _fit(data, short)
    assert set(model.season_clock_["training_cutoffs"].values()) == {1.0}
    assert model.season_clock_["as_of"] == 1.0
    later = data.features.assign(as_of=pd.Timestamp(AS_OF + dt.timedelta(days=30)))
    for frame in (data.features, later):
        np.testing.assert_array_equal(model.predict_proba(frame), plain.predict_proba(frame))
        np.testing.assert_array_equal(model.to_scorer().predict_proba(frame),
                                      plain.to_scorer().predict_proba(frame))


def test_transactions_after_as_of_change_no_score(data: Data, clocked: ChurnModel) -> None:
    # a daily series that runs past as-of (later days inflated) fits the same model
    extra = pd.Series(1000, index=pd.date_range(AS_OF + dt.timedelta(days=1), periods=60,
                                                freq="D", name="day"), dtype="int64")
    model = _fit(data, pd.concat([data.daily, extra]))
    assert model.season_profile_ == clocked.season_profile_
    np.testing.assert_array_equal(model.predict_proba(data.features),
                                  clocked.predict_proba(data.features))


@pytest.mark.slow
def test_fit_models_turns_the_clock_on_with_the_calendar_only(data: Data) -> None:
    from churnlens._config import load_config
    from churnlens._training import fit_models

    settings = load_config(None)
    settings = settings.model_copy(update={"model": settings.model.model_copy(
        update={"n_estimators": 100})})
    on = fit_models(data.history, AS_OF, settings, calendar=True)
    off = fit_models(data.history, AS_OF, settings, calendar=False)
    assert on.churnlens.season_clock_["used"]
    assert on.churnlens.season_clock_["as_of"] == round(
        season_index(data.daily, AS_OF, HORIZON), 4)
    assert "season_profile" in on.churnlens.to_scorer()._meta
    assert not hasattr(off.churnlens, "season_clock_")
    assert "season_profile" not in off.churnlens.to_scorer()._meta


def _parity_data() -> tuple[pd.DataFrame, dt.date]:
    tx = churnlens.load_transactions(churnlens.generate_transactions(
        200, seed=8, start="2022-01-01", end="2023-12-31", season_strength=3)).transactions
    # a refund that nets a customer-day to zero: no occasion that day on any engine
    row = tx.iloc[[10]].assign(amount=-tx["amount"].iloc[10])
    return pd.concat([tx, row], ignore_index=True), dt.date(2023, 9, 30)


def test_daily_occasions_out_of_core_equals_the_frame(tmp_path: object) -> None:
    from churnlens._loading_sql import load_transactions_sql

    tx, until = _parity_data()
    path = tmp_path / "tx.csv"  # type: ignore[operator]
    tx.to_csv(path, index=False)
    clean = load_transactions_sql(path)
    try:
        got = daily_occasions(clean, until)
    finally:
        clean.connection.close()
    pd.testing.assert_series_equal(got, daily_occasions(tx, until), check_names=False,
                                   check_index_type=False, check_freq=False)


@pytest.mark.spark
@pytest.mark.slow
def test_daily_occasions_on_spark_equals_the_frame(spark: object) -> None:
    from churnlens._spark_loading import _from_pandas

    tx, until = _parity_data()
    got = daily_occasions(_from_pandas(spark, tx), until)
    pd.testing.assert_series_equal(got, daily_occasions(tx, until), check_names=False,
                                   check_index_type=False, check_freq=False)


@pytest.mark.slow
def test_in_memory_and_out_of_core_scores_agree_at_another_date(tmp_path: object) -> None:
    from churnlens._config import load_config
    from churnlens._input_features import InputTables
    from churnlens._io import read_table
    from churnlens._out_of_core import score_file_out_of_core
    from churnlens._pipeline import train
    from churnlens._scoring import score_file

    raw = churnlens.generate_transactions(800, seed=SEED, start="2022-01-01",
                                          end="2024-12-31", season_strength=3)
    settings = load_config(overrides={
        "mlflow.enabled": False, "backtest_steps": 0, "snapshots.count": 6,
        "model.n_estimators": 60, "model.min_child_samples": 40,
        "model.select_blend": False})
    artifact = train(raw, as_of="2024-06-30", settings=settings, inputs=InputTables(),
                     ablation=False, calendar=True).artifact
    model = artifact.model
    score_day = dt.date(2024, 8, 15)
    s = season_index_of_counts(model.season_profile_["counts"], dt.date.fromisoformat(
        model.season_profile_["first_day"]), score_day, HORIZON)
    assert model.season_clock_["used"] and abs(s - 1.0) > 0.02 and s != model.season_clock_[
        "as_of"]
    path = tmp_path / "tx.csv"  # type: ignore[operator]
    raw.to_csv(path, index=False)
    memory = score_file(path, score_day, artifact, settings=settings, allow_past=True,
                        inputs=InputTables())
    out = tmp_path / "scores.parquet"  # type: ignore[operator]
    score_file_out_of_core(path, score_day, artifact, out, settings=settings,
                           allow_past=True, inputs=InputTables())
    streamed = read_table(out)
    pd.testing.assert_frame_equal(
        streamed.assign(as_of=streamed["as_of"].astype(str)),
        memory.scores.assign(as_of=memory.scores["as_of"].astype(str)),
        check_exact=True, check_dtype=False)
