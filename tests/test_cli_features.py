"""``churnlens features``: one row per customer, written atomically, exit 2 on bad input."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churnlens import feature_names
from churnlens._io import read_table_metadata
from churnlens.cli import app

GOLDEN = {  # retention.md, features at 2024-03-31
    "customer_id": ["A", "B", "C", "E", "F"],
    "frequency": [2, 1, 1, 1, 1],
    "recency_days": [26, 59, 137, 304, 6],
    "tenure_days": [81, 59, 137, 304, 6],
    "monetary_total": [50.0, 50.0, 10.0, 60.0, 20.0],
}


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def run(cli: CliRunner, *args: str):
    return cli.invoke(app, ["features", *args])


def test_csv_output_reproduces_the_golden_table(cli, golden_csv, tmp_path):
    out = tmp_path / "features.csv"
    result = run(cli, "--transactions", str(golden_csv), "--as-of", "2024-03-31",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "5 customers" in result.stdout and str(out) in result.stdout
    frame = pd.read_csv(out, dtype={"customer_id": str})
    assert list(frame.columns) == ["customer_id", "as_of", *feature_names()]
    assert frame[list(GOLDEN)].to_dict("list") == GOLDEN
    assert set(frame["as_of"]) == {"2024-03-31"}
    assert frame["gap_mean_days"].isna().sum() == 4  # empty cells, not 0


def test_parquet_output_with_mapped_columns_and_metadata(cli, golden_raw, tmp_path):
    source = tmp_path / "orders.csv"
    golden_raw.rename(columns={"customer_id": "client", "timestamp": "ordered",
                               "amount": "total"}).assign(
        ordered=lambda f: pd.to_datetime(f["ordered"]).dt.strftime("%d/%m/%Y")
    ).to_csv(source, index=False)
    out = tmp_path / "features.parquet"
    result = run(cli, "-t", str(source), "--as-of", "2024-03-31", "-o", str(out),
                 "--customer-col", "client", "--time-col", "ordered", "--amount-col", "total",
                 "--time-format", "%d/%m/%Y", "--windows-days", "7,28")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame[list(GOLDEN)].to_dict("list") == GOLDEN
    assert "occasions_28d" in frame and "occasions_30d" not in frame
    assert frame["as_of"].tolist() == [dt.date(2024, 3, 31)] * 5
    assert str(pq.read_schema(out).field("as_of").type) == "date32[day]"
    meta = read_table_metadata(out)
    assert meta["as_of"] == "2024-03-31" and meta["windows_days"] == "[7, 28]"
    # the later rows (A 05-20, C 04-02, D 04-20, E 05-01) are counted, and D has no row
    assert "4 after the as-of" in result.output
    assert "D" not in set(frame["customer_id"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "31/03/2024x"], "--as-of"),
        (["--as-of", "2020-01-01"], "no transactions on or before"),
        (["--as-of", "2024-03-31", "--amount-col", "price"], "price"),
        (["--as-of", "2024-03-31", "--windows-days", "30,thirty"], "--windows-days"),
        (["--as-of", "2024-03-31", "--windows-days", "0"], "--windows-days: 0"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(cli, golden_csv, tmp_path, args, message):
    out = tmp_path / "features.parquet"
    result = run(cli, "--transactions", str(golden_csv), "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [golden_csv]  # no output, no temporary file


def test_unsupported_output_type_is_refused_before_reading(cli, tmp_path):
    result = run(cli, "--transactions", str(tmp_path / "missing.csv"), "--as-of", "2024-03-31",
                 "--out", str(tmp_path / "features.xlsx"))
    assert result.exit_code == 2
    assert "unsupported output type" in result.output


def test_an_existing_output_survives_a_failed_run(cli, golden_csv, tmp_path):
    out = tmp_path / "features.csv"
    out.write_text("previous\n")
    result = run(cli, "--transactions", str(golden_csv), "--as-of", "1999-01-01",
                 "--out", str(out))
    assert result.exit_code == 2
    assert out.read_text() == "previous\n"


CALENDAR = ["season_sin", "season_cos", "last_year_window_share"]


def test_calendar_writes_the_season_columns_as_train_does_on_a_short_history(
        cli, golden_csv, tmp_path):
    # the golden log spans under a year: train --calendar still learns the group (no
    # error, no calendar note), so features --calendar writes it too; 2024-03-31 is day
    # 91 of 2024, and nobody has a year of history (last_year_window_share undefined)
    out = tmp_path / "features.csv"
    result = run(cli, "--transactions", str(golden_csv), "--as-of", "2024-03-31",
                 "--out", str(out), "--calendar")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype={"customer_id": str})
    assert list(frame.columns) == ["customer_id", "as_of", *feature_names(), *CALENDAR]
    angle = 2 * math.pi * 91 / 365.25
    assert frame["season_sin"].tolist() == pytest.approx([math.sin(angle)] * 5, abs=1e-12)
    assert frame["season_cos"].tolist() == pytest.approx([math.cos(angle)] * 5, abs=1e-12)
    assert frame["last_year_window_share"].isna().all()
    # off by default and with --no-calendar, as in train
    for flags in ([], ["--no-calendar"]):
        result = run(cli, "--transactions", str(golden_csv), "--as-of", "2024-03-31",
                     "--out", str(out), *flags)
        assert result.exit_code == 0, result.output
        assert list(pd.read_csv(out).columns) == ["customer_id", "as_of", *feature_names()]


def test_calendar_is_one_shared_option_of_train_backtest_and_features():
    from churnlens.cli import _features, _options, _train

    assert _features.CalendarOpt is _options.CalendarOpt is _train.CalendarOpt
    for command in ("features", "train", "backtest"):
        result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
        assert "--calendar" in result.stdout and "--no-calendar" in result.stdout


@pytest.mark.slow
def test_calendar_features_are_what_a_calendar_model_scores_with(cli, tmp_path, monkeypatch):
    # A model trained with --calendar on two years of synthetic history, scored by the
    # CLI: the feature rows score_batch receives are what the model sees; features
    # --calendar at the same as-of date writes the same calendar values.
    import churnlens._out_of_core as out_of_core
    from churnlens import generate_transactions

    seed = 11
    print(f"generate_transactions(300, seed={seed})")
    generate_transactions(300, seed=seed, start="2023-01-01", end="2024-12-31").to_csv(
        tmp_path / "tx.csv", index=False)
    config = tmp_path / "small.yaml"
    config.write_text("model:\n  n_estimators: 30\n  n_jobs: 1\nsnapshots:\n  count: 4\n")
    common = ["--transactions", str(tmp_path / "tx.csv"), "--as-of", "2024-09-30",
              "--config", str(config)]
    result = cli.invoke(app, ["train", *common, "--calendar", "--no-mlflow", "--no-ablation",
                              "--bundle", str(tmp_path / "bundle")])
    assert result.exit_code == 0, result.output
    assert "inputs: calendar (3 features" in result.stdout

    seen: list[pd.DataFrame] = []
    score_batch = out_of_core.score_batch

    def spy(features, *args, **kwargs):
        seen.append(features[["customer_id", *CALENDAR]].copy())
        return score_batch(features, *args, **kwargs)

    monkeypatch.setattr(out_of_core, "score_batch", spy)
    result = cli.invoke(app, ["score", *common, "--model", str(tmp_path / "bundle"),
                              "--out", str(tmp_path / "scores.csv"), "--no-ledger"])
    assert result.exit_code == 0, result.output
    scored = (pd.concat(seen).astype({"customer_id": str}).sort_values("customer_id")
              .reset_index(drop=True))

    result = run(cli, *common, "--out", str(tmp_path / "features.parquet"), "--calendar")
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(tmp_path / "features.parquet")
    assert list(written.columns[-3:]) == CALENDAR
    written = (written[["customer_id", *CALENDAR]].astype({"customer_id": str})
               .sort_values("customer_id").reset_index(drop=True))
    assert len(written) == len(scored) > 0
    assert written["last_year_window_share"].notna().any()  # over a year of history
    pd.testing.assert_frame_equal(written, scored, check_dtype=False, rtol=0, atol=0)


def test_horizon_days_sets_the_calendar_window(cli, tmp_path):
    # last_year_window_share: the share of last year's purchases in the window of the
    # horizon's length a year before the as-of date, so --horizon-days changes it (and
    # only it); without the flag the config's 91 days; 0 days is refused with exit 2
    from churnlens import generate_transactions

    generate_transactions(300, seed=5, start="2023-01-01", end="2024-09-30").to_csv(
        tmp_path / "tx.csv", index=False)
    common = ["--transactions", str(tmp_path / "tx.csv"), "--as-of", "2024-09-30",
              "--calendar"]
    frames = {}
    for flags in ([], ["--horizon-days", "91"], ["--horizon-days", "30"]):
        out = tmp_path / f"features{len(frames)}.parquet"
        result = run(cli, *common, "--out", str(out), *flags)
        assert result.exit_code == 0, result.output
        frames[" ".join(flags)] = pd.read_parquet(out).set_index("customer_id")
    default, same, short = frames[""], frames["--horizon-days 91"], frames["--horizon-days 30"]
    pd.testing.assert_frame_equal(default, same)
    share = default["last_year_window_share"]
    assert share.notna().any()
    assert not np.allclose(share.fillna(-1), short["last_year_window_share"].fillna(-1))
    pd.testing.assert_frame_equal(default.drop(columns="last_year_window_share"),
                                  short.drop(columns="last_year_window_share"))
    result = run(cli, *common, "--out", str(tmp_path / "bad.parquet"), "--horizon-days", "0")
    assert result.exit_code == 2 and not (tmp_path / "bad.parquet").exists()
