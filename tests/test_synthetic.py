"""Synthetic transactions: deterministic for a seed, realistic, and valid input.

Seeds are fixed and named in each test, so a failure reproduces exactly.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlens import ChurnlensError, generate_transactions, load_transactions
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
