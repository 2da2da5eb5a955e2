"""Synthetic transactions: deterministic for a seed, realistic, and valid input.

Seeds are fixed and named in each test, so a failure reproduces exactly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlens import ChurnlensError, generate_transactions, load_transactions
from churnlens._io import write_table
from churnlens._synthetic import (
    _OPTION_DEFAULTS,
    CHUNK_CUSTOMERS,
    iter_transaction_chunks,
    write_transactions,
)
from churnlens.cli import app

REALISM_SEED = 1


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """3,000 customers over the default two years (2023-01-01 .. 2024-12-31)."""
    return generate_transactions(3_000, seed=REALISM_SEED)


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def test_same_seed_same_frame() -> None:
    first = generate_transactions(500, seed=7)
    pd.testing.assert_frame_equal(first, generate_transactions(500, seed=7))


def test_different_seeds_differ() -> None:
    one, two = generate_transactions(500, seed=7), generate_transactions(500, seed=8)
    assert not one.equals(two)
    assert one["amount"].sum() != two["amount"].sum()


def test_columns_and_types(synthetic: pd.DataFrame) -> None:
    assert list(synthetic.columns) == ["customer_id", "timestamp", "amount", "country"]
    assert pd.api.types.is_string_dtype(synthetic["customer_id"])
    assert synthetic["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert "C0000001" in set(synthetic["customer_id"])  # leading zeros kept
    assert synthetic["customer_id"].nunique() == 3_000  # every customer buys at least once
    assert pd.api.types.is_datetime64_dtype(synthetic["timestamp"])
    assert synthetic["timestamp"].is_monotonic_increasing
    assert synthetic["amount"].dtype == "float64"
    assert synthetic.groupby("customer_id")["country"].nunique().max() == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_same_seed_byte_identical_files(fmt: str, tmp_path: Path, cli: CliRunner) -> None:
    paths = [tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}", tmp_path / f"c.{fmt}"]
    for path, seed in zip(paths, (1, 1, 2), strict=True):
        result = cli.invoke(app, ["generate", "--customers", "1000", "--seed", str(seed),
                                  "--out", str(path)])
        assert result.exit_code == 0, result.output
        assert "1,000 customers" in result.stdout
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    # only the outputs: no temporary files left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_file_loads_as_the_frame(fmt: str, tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / f"t.{fmt}"
    result = cli.invoke(app, ["generate", "-n", "1000", "--seed", "1", "-o", str(path)])
    assert result.exit_code == 0, result.output
    expected = generate_transactions(1000, seed=1)
    tx, report = load_transactions(path, extra_cols=["country"])
    assert tx["customer_id"].tolist() == expected["customer_id"].tolist()
    assert tx["timestamp"].tolist() == expected["timestamp"].tolist()
    assert tx["amount"].tolist() == expected["amount"].tolist()
    assert tx["country"].tolist() == expected["country"].tolist()
    assert report.customers == 1000 and report.rows_dropped == 0
    validated = cli.invoke(app, ["validate", "--transactions", str(path)])
    assert validated.exit_code == 0, validated.output
    assert "valid" in validated.stdout


def test_output_passes_load_transactions(synthetic: pd.DataFrame) -> None:
    _, report = load_transactions(synthetic)
    assert report.rows_kept == report.rows_read == len(synthetic)
    assert report.customers == 3_000
    assert report.dropped_missing_customer_id == report.dropped_after_as_of == 0
    assert report.timestamps_converted_to_utc == 0
    assert report.first_day >= dt.date(2023, 1, 1) and report.last_day <= dt.date(2024, 12, 31)
    assert report.refund_rows == int((synthetic["amount"] < 0).sum()) > 0


def test_refunds_present_and_never_first(synthetic: pd.DataFrame) -> None:
    refunds = synthetic["amount"] < 0
    share = refunds.mean()
    assert 0.005 < share < 0.05, f"refund share {share:.3%} (seed {REALISM_SEED})"
    # a refund follows a purchase: nobody's first row is a refund
    first_rows = synthetic.groupby("customer_id", sort=False).head(1)
    assert (first_rows["amount"] > 0).all()
    assert (synthetic.loc[~refunds, "amount"] >= 0.5).all()


def test_same_day_multiple_rows_present(synthetic: pd.DataFrame) -> None:
    day = synthetic["timestamp"].dt.normalize()
    rows_per_occasion = synthetic[synthetic["amount"] > 0].groupby(["customer_id", day]).size()
    assert (rows_per_occasion > 1).mean() > 0.1


def test_single_purchase_customers_present(synthetic: pd.DataFrame) -> None:
    day = synthetic["timestamp"].dt.normalize()
    positive = synthetic[synthetic["amount"] > 0]
    occasions = positive.groupby(["customer_id", day]).size().groupby(level=0).size()
    assert (occasions == 1).sum() > 0.05 * 3_000  # one-time buyers
    assert (occasions >= 5).sum() > 0.05 * 3_000  # and loyal ones: rates differ


def test_acquisition_spread_over_time(synthetic: pd.DataFrame) -> None:
    first = synthetic.groupby("customer_id")["timestamp"].min()
    per_quarter = first.dt.to_period("Q").value_counts().sort_index()
    assert len(per_quarter) == 8  # customers arrive in every quarter of the two years
    assert per_quarter.min() > 0.03 * 3_000
    assert per_quarter.iloc[-1] > per_quarter.iloc[0]  # a growing business


def test_dropout_customers_stop_buying(synthetic: pd.DataFrame) -> None:
    last = synthetic.groupby("customer_id")["timestamp"].max()
    first = synthetic.groupby("customer_id")["timestamp"].min()
    early = first < pd.Timestamp("2023-07-01")
    gone = last[early] < pd.Timestamp("2024-01-01")  # bought nothing in the whole last year
    assert gone.mean() > 0.2


def test_seasonality_december_peak(synthetic: pd.DataFrame) -> None:
    per_month = synthetic.groupby(synthetic["timestamp"].dt.to_period("M")).size()
    assert per_month[pd.Period("2024-12")] > 1.1 * per_month[pd.Period("2024-06")]
    # not just growth: December beats the January after it, when more customers exist
    assert per_month[pd.Period("2023-12")] > 1.2 * per_month[pd.Period("2024-01")]


def test_custom_period() -> None:
    tx = generate_transactions(300, seed=4, start="2020-02-01", end="2020-03-31")
    assert tx["timestamp"].min() >= pd.Timestamp("2020-02-01")
    assert tx["timestamp"].max() < pd.Timestamp("2020-04-01")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_customers": 0}, "n_customers"),
        ({"n_customers": -5}, "n_customers"),
        ({"n_customers": True}, "n_customers"),
        ({"n_customers": 10.5}, "n_customers"),
        ({"start": "2024-01-01", "end": "2023-01-01"}, "must be after start"),
        ({"start": "someday"}, "start"),
        ({"refund_share": 1.0}, "refund_share"),
        ({"mean_gap_days": 0}, "mean_gap_days"),
        ({"history_start": "2023-01-01"}, "history_start .* must be before start"),
        ({"history_start": "someday"}, "history_start"),
        ({"season_strength": 3.5}, "season_strength"),
        ({"season_strength": True}, "season_strength"),
        ({"season_strength": float("nan")}, "season_strength"),
        ({"dropout_beta": (0.0, 14.0)}, "dropout_beta"),
        ({"dropout_beta": (2.0,)}, "dropout_beta"),
        ({"dropout_beta": 2.0}, "dropout_beta"),
        ({"rate_shape": 0}, "rate_shape"),
        ({"one_time_share": 1.0}, "one_time_share"),
        ({"one_time_share": -0.1}, "one_time_share"),
        ({"acquisition_power": 0}, "acquisition_power"),
        ({"shift_dropout_factor": 0, "shift_date": "2024-01-01"}, "shift_dropout_factor"),
        ({"shift_dropout_factor": 2.0}, "shift_dropout_factor needs a shift_date"),
        ({"shift_date": "2025-03-01"}, "shift_date .* outside the simulated period"),
        ({"shift_date": "2022-06-01"}, "outside the simulated period"),
    ],
)
def test_bad_parameters(kwargs: dict, fragment: str) -> None:
    kwargs = {"n_customers": 10, **kwargs}
    with pytest.raises(ChurnlensError, match=fragment) as caught:
        generate_transactions(**kwargs)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("out", "extra", "fragment"),
    [
        ("t.xlsx", [], "unsupported output type '.xlsx'"),
        ("t", [], "(no extension)"),
        ("no-such-folder/t.csv", [], "does not exist"),
        ("folder.csv", [], "is a directory"),
        ("t.csv", ["--customers", "0"], "--customers: 0 is not a positive whole number"),
        ("t.parquet", ["--start", "not-a-date"], "start"),
    ],
)
def test_cli_generate_bad_output_exit_2_no_file(out: str, extra: list[str], fragment: str,
                                                tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "folder.csv").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = cli.invoke(app, ["generate", "--customers", "50", "--out", str(tmp_path / out),
                              *extra])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_cli_generate_replaces_an_existing_file(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "t.csv"
    path.write_text("old content\n")
    result = cli.invoke(app, ["generate", "-n", "20", "--seed", "3", "-o", str(path)])
    assert result.exit_code == 0, result.output
    # The one CSV dialect of churnlens' table writer: plain header, CRLF line ends.
    assert path.read_bytes().startswith(b"customer_id,timestamp,amount,country\r\n")


# --- Regime knobs (issue 15's quality benchmark) -----------------------------------------
# Every knob at its default must give the rows of the generator before the knobs existed:
# demos, tests and cached benchmark data depend on them. The digests below were computed
# with the code before the knobs (and are unchanged by them).
DEFAULT_DIGESTS = {
    (500, 0, ()): "d097f5bad9c22aff",
    (300, 4, (("start", "2020-02-01"), ("end", "2020-03-31"), ("mean_gap_days", 7.0),
              ("refund_share", 0.1))): "b44e352b83b97a79",
}
KNOB_DEFAULTS = {"history_start": None, "season_strength": 1.0, "dropout_beta": (2.0, 14.0),
                 "rate_shape": 1.2, "one_time_share": 0.0, "acquisition_power": 0.75,
                 "shift_date": None, "shift_dropout_factor": 1.0}
HORIZON = pd.Timedelta(days=91)


def _digest(tx: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update("\n".join(tx["customer_id"]).encode())
    h.update(tx["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64).tobytes())
    h.update(tx["amount"].to_numpy().tobytes())
    h.update("\n".join(tx["country"]).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(("n", "seed", "options"), list(DEFAULT_DIGESTS))
def test_default_knobs_give_the_rows_of_before(n: int, seed: int, options: tuple) -> None:
    assert _digest(generate_transactions(n, seed=seed, **dict(options))) == DEFAULT_DIGESTS[
        (n, seed, options)]
    # the same when every knob is given at its default value
    explicit = generate_transactions(n, seed=seed, **dict(options), **KNOB_DEFAULTS)
    assert _digest(explicit) == DEFAULT_DIGESTS[(n, seed, options)]


def _occasions(tx: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and purchase day (refunds left out)."""
    bought = tx.loc[tx["amount"] > 0, ["customer_id", "timestamp"]]
    return bought.assign(day=bought["timestamp"].dt.normalize()).drop_duplicates(
        ["customer_id", "day"])


def _churn_per_horizon(tx: pd.DataFrame, as_of: str) -> float:
    """Share of customers who bought in (A - 91, A] and buy nothing in (A, A + 91]."""
    occasions = _occasions(tx)
    at = pd.Timestamp(as_of)
    day = occasions["day"]
    active = set(occasions.loc[(day > at - HORIZON) & (day <= at), "customer_id"])
    again = set(occasions.loc[(day > at) & (day <= at + HORIZON), "customer_id"])
    assert len(active) > 300, f"too few active customers at {as_of} to measure churn"
    return 1 - len(active & again) / len(active)


def _one_time_share(tx: pd.DataFrame) -> float:
    return float((_occasions(tx).groupby("customer_id").size() == 1).mean())


def test_left_truncated_log_is_the_later_part_of_a_longer_one() -> None:
    # seed 21: the same simulation seen from 2021 and from 2023 on
    options = {"seed": 21, "end": "2024-12-31", "acquisition_power": 1.0}
    full = generate_transactions(3_000, start="2021-01-01", **options)
    truncated = generate_transactions(3_000, start="2023-01-01", history_start="2021-01-01",
                                      **options)
    assert truncated["timestamp"].min() >= pd.Timestamp("2023-01-01")
    later = full.loc[full["timestamp"] >= pd.Timestamp("2023-01-01")]
    key = ["customer_id", "timestamp", "amount"]
    merged = later.merge(truncated, on=key, how="left", indicator=True)
    # every row of the log is a row of the longer simulation; the only rows missing are
    # refunds (of purchases made before the log starts)
    assert len(truncated.merge(later, on=key)) == len(truncated)
    assert (merged.loc[merged["_merge"] == "left_only", "amount"] < 0).all()
    first_rows = truncated.groupby("customer_id", sort=False).head(1)
    assert (first_rows["amount"] > 0).all()  # no customer starts with a refund
    _, report = load_transactions(truncated)
    assert report.rows_kept == len(truncated)


def test_left_truncated_log_has_many_old_customers() -> None:
    # seed 22: a steady flow of new customers since 2021, log kept from 2023
    tx = generate_transactions(4_000, seed=22, history_start="2021-01-01",
                               acquisition_power=1.0)
    first_seen = tx.groupby("customer_id")["timestamp"].min().dt.to_period("M")
    per_month = first_seen.value_counts()
    # customers acquired before the log began all show up as "new" in its first months
    assert per_month[pd.Period("2023-01")] > 2 * per_month[pd.Period("2023-06")]
    old = (first_seen < pd.Period("2023-04")).sum() - 3 * per_month[pd.Period("2023-06")]
    assert old > 0.15 * len(first_seen), "too few customers older than the log"
    # ... and they are not all gone: churn per horizon is as in an ordinary log
    assert 0.25 < _churn_per_horizon(tx, "2023-04-01") < 0.55


def test_season_strength_scales_the_season() -> None:
    # seed 11: one year of data; the wave peaks in summer, the year-end peak in December
    def per_month(strength: float) -> pd.Series:
        tx = generate_transactions(4_000, seed=11, start="2023-01-01", end="2023-12-31",
                                   season_strength=strength)
        return _occasions(tx)["day"].dt.month.value_counts()

    flat, strong = per_month(0.0), per_month(3.0)
    # October is the trough of the season; December and July are its peaks
    assert flat[12] < 1.2 * flat[10]
    assert strong[12] > 1.8 * strong[10]
    assert strong[7] > 1.3 * strong[10]
    assert strong[12] / strong[10] > 1.5 * flat[12] / flat[10]


def test_frequent_loyal_buyers_churn_little() -> None:
    # seed 23: weekly shoppers who rarely drop out
    tx = generate_transactions(3_000, seed=23, mean_gap_days=7.0, dropout_beta=(1.0, 200.0),
                               rate_shape=4.0)
    for as_of in ("2023-09-29", "2024-06-30", "2024-09-30"):
        assert _churn_per_horizon(tx, as_of) < 0.10, as_of
    gaps = _occasions(tx).groupby("customer_id")["day"].diff().dt.days.dropna()
    assert gaps.mean() < 9  # about weekly (the default's customers: every three weeks)
    default_gaps = _occasions(generate_transactions(3_000, seed=23)).groupby("customer_id")[
        "day"].diff().dt.days
    assert default_gaps.mean() > 2 * gaps.mean()
    assert _churn_per_horizon(generate_transactions(3_000, seed=23), "2024-06-30") > 0.3


def test_one_time_share_makes_half_buy_once() -> None:
    # seed 24
    assert 0.45 < _one_time_share(generate_transactions(4_000, seed=24, one_time_share=0.4)) < 0.6
    assert _one_time_share(generate_transactions(4_000, seed=24)) < 0.3


def test_acquisition_power_makes_a_growing_business() -> None:
    # seed 25: new customers in every month, far more in the last ones
    tx = generate_transactions(6_000, seed=25, acquisition_power=0.5)
    new = tx.groupby("customer_id")["timestamp"].min().dt.to_period("M").value_counts()
    assert len(new) == 24 and new.min() >= 10
    last_quarter = new[new.index >= pd.Period("2024-10")].sum()
    first_quarter = new[new.index <= pd.Period("2023-03")].sum()
    assert last_quarter > 5 * first_quarter
    steady = generate_transactions(6_000, seed=25, acquisition_power=1.0)
    steady_new = steady.groupby("customer_id")["timestamp"].min().dt.to_period("M")
    counts = steady_new.value_counts()
    assert counts.max() < 2 * counts.min()  # a steady flow: about as many every month


def test_shift_raises_churn_after_its_date() -> None:
    # seed 26: dropout per purchase triples from 2024-07-01
    options = {"seed": 26, "shift_date": "2024-07-01"}
    shifted = generate_transactions(4_000, shift_dropout_factor=3.0, **options)
    before, after = (_churn_per_horizon(shifted, a) for a in ("2024-03-31", "2024-09-30"))
    assert after > before + 0.15, (before, after)
    # a factor of 1 changes nothing on average: churn stays where it was
    same = generate_transactions(4_000, shift_dropout_factor=1.0, **options)
    assert abs(_churn_per_horizon(same, "2024-09-30") - before) < 0.06


# --- Streaming generator (issue 19: write_transactions, chunks of customers) -------------
# Digests of generate_transactions' rows computed with the code before the streaming
# generator (/tmp/base17, the wave before issue 19): one chunk must keep those rows.
BEFORE_STREAM_DIGESTS = {
    (1000, 3, ()): "a5e6598d1954a3bf",
    (2000, 5, (("history_start", "2021-06-01"), ("one_time_share", 0.3),
               ("acquisition_power", 0.5))): "287b8fe43397480e",
    (1500, 9, (("shift_date", "2024-03-01"), ("shift_dropout_factor", 2.0),
               ("season_strength", 2.0), ("dropout_beta", (1.0, 50.0)), ("rate_shape", 3.0),
               ("mean_gap_days", 10.0), ("refund_share", 0.05))): "6baca7fceadf108c",
}


@pytest.mark.parametrize(("n", "seed", "options"), list(BEFORE_STREAM_DIGESTS))
def test_one_chunk_writes_the_rows_of_before(n: int, seed: int, options: tuple,
                                             tmp_path: Path) -> None:
    expected = BEFORE_STREAM_DIGESTS[(n, seed, options)]
    assert _digest(generate_transactions(n, seed=seed, **dict(options))) == expected
    path = tmp_path / "t.parquet"
    written = write_transactions(path, n, seed=seed, **dict(options))
    assert written.chunks == 1 and written.chunk_customers == CHUNK_CUSTOMERS >= n
    back = pd.read_parquet(path)
    assert _digest(back) == expected
    assert written.transactions == len(back)
    assert (written.first, written.last) == (back["timestamp"].min(), back["timestamp"].max())
    # a chunk size just large enough is the same single chunk
    assert _digest(next(iter_transaction_chunks(n, seed=seed, chunk_customers=n,
                                                **dict(options)))) == expected


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_one_chunk_file_is_byte_identical_to_the_table_writer(fmt: str,
                                                              tmp_path: Path) -> None:
    streamed, whole = tmp_path / f"s.{fmt}", tmp_path / f"w.{fmt}"
    write_transactions(streamed, 700, seed=11)
    write_table(generate_transactions(700, seed=11), whole)
    assert streamed.read_bytes() == whole.read_bytes()


@pytest.fixture(scope="module")
def chunked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """2,500 customers in chunks of 1,000 (seed 31), written to Parquet and read back."""
    path = tmp_path_factory.mktemp("chunked") / "t.parquet"
    write_transactions(path, 2_500, seed=31, chunk_customers=1_000)
    return path, pd.read_parquet(path)


def test_chunks_continue_the_customer_ids(chunked: tuple[Path, pd.DataFrame]) -> None:
    path, tx = chunked
    ids = tx["customer_id"]
    assert ids.nunique() == 2_500  # every customer of every chunk, each id once
    assert set(ids) == {f"C{i:07d}" for i in range(1, 2_501)}
    # small chunks: one row group each, each chunk's customers in their own row group
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3
    groups = [set(parquet.read_row_group(i).column("customer_id").to_pylist())
              for i in range(3)]
    assert [len(g) for g in groups] == [1_000, 1_000, 500]
    assert max(groups[0]) < min(groups[1]) and max(groups[1]) < min(groups[2])
    # the first chunk is generate_transactions' own rows (the ids have the same width)
    first = tx.iloc[: parquet.metadata.row_group(0).num_rows].reset_index(drop=True)
    assert _digest(first) == _digest(generate_transactions(1_000, seed=31))
    # the whole file meets the data contract (the rows are sorted by time per chunk)
    _, report = load_transactions(path, extra_cols=["country"])
    assert report.rows_kept == len(tx) and report.customers == 2_500


def test_chunks_are_deterministic_and_independent(chunked: tuple[Path, pd.DataFrame],
                                                  tmp_path: Path) -> None:
    path, tx = chunked
    again = tmp_path / "again.parquet"
    write_transactions(again, 2_500, seed=31, chunk_customers=1_000)
    assert again.read_bytes() == path.read_bytes()
    other = tmp_path / "other.parquet"
    write_transactions(other, 2_500, seed=32, chunk_customers=1_000)
    assert not pd.read_parquet(other).equals(tx)
    # chunk k does not depend on how many customers follow it (the same id width)
    short = list(iter_transaction_chunks(2_500, seed=31, chunk_customers=1_000))
    longer = iter_transaction_chunks(9_000, seed=31, chunk_customers=1_000)
    for part in short[:2]:
        pd.testing.assert_frame_equal(part, next(longer))
    # the chunks are different draws, not copies of chunk 0 under other ids
    assert short[0]["amount"].sum() != short[1]["amount"].sum()
    assert len(short) == 3 and sum(map(len, short)) == len(tx)


def test_id_width_follows_the_whole_population() -> None:
    part = next(iter_transaction_chunks(12_000_000, seed=2, chunk_customers=50))
    assert part["customer_id"].str.fullmatch(r"C\d{8}").all()
    assert part["customer_id"].min() == "C00000001" and part["customer_id"].nunique() == 50


def test_chunked_csv_has_one_header_and_the_parquet_rows(chunked: tuple[Path, pd.DataFrame],
                                                         tmp_path: Path) -> None:
    _, tx = chunked
    path = tmp_path / "t.csv"
    written = write_transactions(path, 2_500, seed=31, chunk_customers=1_000)
    text = path.read_bytes()
    assert text.count(b"customer_id,timestamp,amount,country\r\n") == 1
    assert text.startswith(b"customer_id,")
    back, _ = load_transactions(path, extra_cols=["country"])
    assert written.transactions == len(tx) == len(back)
    assert sorted(back["customer_id"]) == sorted(tx["customer_id"])
    assert back["amount"].sum() == pytest.approx(tx["amount"].sum(), abs=1e-6)


def test_knobs_keep_their_effect_in_chunks() -> None:
    # seed 24 (as the one_time_share test above), 4,000 customers in chunks of 1,000
    def chunks(**options: object) -> pd.DataFrame:
        return pd.concat(iter_transaction_chunks(4_000, seed=24, chunk_customers=1_000,
                                                 **options), ignore_index=True)

    assert 0.45 < _one_time_share(chunks(one_time_share=0.4)) < 0.6
    plain, whole = chunks(), generate_transactions(4_000, seed=24)
    assert _one_time_share(plain) < 0.3
    # the same law as one population simulated at once: rows, spend, refunds, countries
    assert len(plain) / len(whole) == pytest.approx(1, abs=0.1)
    assert plain["amount"].mean() == pytest.approx(whole["amount"].mean(), rel=0.1)
    assert (plain["amount"] < 0).mean() == pytest.approx((whole["amount"] < 0).mean(),
                                                        abs=0.005)
    shares = plain.drop_duplicates("customer_id")["country"].value_counts(normalize=True)
    assert shares["US"] == pytest.approx(0.45, abs=0.03)
    # a growing business, in every chunk alike: far more new customers late than early
    grown = chunks(acquisition_power=0.5)
    new = grown.groupby("customer_id")["timestamp"].min().dt.to_period("M").value_counts()
    late = new[new.index >= pd.Period("2024-10")].sum()
    assert late > 5 * new[new.index <= pd.Period("2023-03")].sum()
    # a log that starts mid-life: nothing before start, no customer starts with a refund
    truncated = chunks(history_start="2021-01-01", start="2023-01-01")
    assert truncated["timestamp"].min() >= pd.Timestamp("2023-01-01")
    firsts = truncated.sort_values("timestamp", kind="stable").groupby("customer_id").head(1)
    assert (firsts["amount"] > 0).all()
    assert truncated["customer_id"].nunique() < 4_000  # some were gone before 2023


def test_an_interrupted_write_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"the earlier file")
    seen: list[str] = []

    def interrupt(message: str) -> None:
        seen.append(message)
        if len(seen) == 2:  # after chunk 1 was written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_transactions(path, 3_000, seed=4, chunk_customers=1_000, progress=interrupt)
    assert seen[0].startswith("chunk 1/3: customers 1 .. 1,000 of 3,000")
    assert path.read_bytes() == b"the earlier file"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temporary left
    fresh = tmp_path / "fresh.csv"
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        write_transactions(fresh, 3_000, seed=4, chunk_customers=1_000, progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"chunk_customers": 0}, "chunk_customers"),
        ({"one_time_share": 1.5}, "one_time_share"),
        ({"end": "2022-01-01"}, "must be after start"),
        ({"n_customers": -3}, "n_customers"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
    ],
)
def test_bad_streaming_parameters_fail_before_any_file(kwargs: dict, fragment: str,
                                                       tmp_path: Path) -> None:
    with pytest.raises(ChurnlensError, match=fragment):
        write_transactions(tmp_path / "t.parquet", **{"n_customers": 100, **kwargs})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ChurnlensError, match="unknown option"):
        next(iter_transaction_chunks(10, colour="red"))


def test_the_streaming_writer_takes_the_options_of_generate_transactions() -> None:
    # write_transactions repeats generate_transactions' keywords so that both public
    # signatures stay typed and documented; iter_transaction_chunks reads the defaults
    # from _OPTION_DEFAULTS. All three must say the same.
    def keywords(function: Callable[..., object], skip: set[str]) -> dict[str, object]:
        parameters = inspect.signature(function).parameters.values()
        return {p.name: p.default for p in parameters if p.name not in skip}

    generate = keywords(generate_transactions, {"n_customers", "seed"})
    assert generate == _OPTION_DEFAULTS
    assert keywords(write_transactions, {"path", "n_customers", "seed", "chunk_customers",
                                         "progress", "customers_path", "events_path",
                                         "input_effects", "details"}) == generate


@pytest.mark.slow
def test_cli_generate_streams_more_than_one_chunk(tmp_path: Path, cli: CliRunner) -> None:
    n = CHUNK_CUSTOMERS + 1_500
    path = tmp_path / "t.parquet"
    result = cli.invoke(app, ["generate", "-n", str(n), "--seed", "5", "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert f"for {n:,} customers" in result.stdout
    assert "chunk 2/2" in result.stderr
    tx = pd.read_parquet(path, columns=["customer_id"])
    assert f"wrote {len(tx):,} transactions" in result.stdout
    assert tx["customer_id"].nunique() == n
    assert tx["customer_id"].max() == f"C{n:07d}"
