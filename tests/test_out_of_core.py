"""``features`` and ``score`` out of core (``churnlens._out_of_core``): parity with the
in-memory path (pandas loader, ``compute_features``, ``score_file`` + ``write_table``).

The features must be the same to the bit, the score files the same rows, values, order,
types and metadata (CSV: the same bytes), the summary, feature profile and ledger risks
the same; the RFM segment computed in SQL must equal ``_rules.rfm_segment``; a failure
must leave nothing behind.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import churnlens
from churnlens._config import load_config
from churnlens._features import compute_features
from churnlens._io import read_table_metadata, write_table
from churnlens._loading import load_transactions
from churnlens._out_of_core import (
    _CENTS,
    _M_KEY,
    _SCORING,
    _SEGMENT,
    _SEGMENTS,
    TableWriter,
    _cents,
    _scoring_sql,
    _segment_sql,
    score_file_out_of_core,
    write_features_file,
)
from churnlens._rules import rfm_segment
from churnlens._scoring import score_file
from tests.test_loading import CORPUS
from tests.test_loading_sql import random_log

SCORE_AS_OF = dt.date(2024, 4, 30)
FAST_MODEL = {"mlflow.enabled": False, "backtest_steps": 0, "snapshots.count": 6,
              "model.n_estimators": 60, "model.min_child_samples": 40,
              "model.early_stopping_rounds": 20, "model.select_blend": False}


# --- features ----------------------------------------------------------------------------


def _bits(values: pd.Series) -> Any:
    """A column as comparable exact values: float bits, ids and dates as text."""
    if pd.api.types.is_float_dtype(values):
        return values.to_numpy(dtype=np.float64).tobytes()
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64).tolist()
    return [None if pd.isna(v) else str(v) for v in values]


def _assert_features_equal(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for column in expected.columns:
        assert _bits(got[column]) == _bits(expected[column]), column


def _features_both_ways(path: Path, tmp_path: Path, as_of: Any = None,
                        **kwargs: Any) -> tuple[Any, Any]:
    """(outcome of the in-memory features, outcome of the out-of-core file)."""
    try:
        loaded = load_transactions(path, as_of=as_of, **kwargs)
        day = as_of or loaded.report.last_day
        expected: Any = compute_features(loaded.transactions, day)
        expected["as_of"] = expected["as_of"].dt.date
    except ValueError as exc:
        expected, day = (type(exc), str(exc)), as_of or dt.date(2024, 12, 31)
    out = tmp_path / "features.parquet"
    try:
        _report, rows, width = write_features_file(
            path, day, out, windows_days=(30, 90, 180, 365),
            metadata=lambda report: {"source": report.source},
            loader_options={**kwargs}, chunk_rows=7)
        got: Any = pd.read_parquet(out)
        assert rows == len(got) and width == len(got.columns) - 2
    except ValueError as exc:
        got = (type(exc), str(exc))
        assert not out.exists()
    return expected, got


@pytest.mark.parametrize("case", [c for c in CORPUS if c.id != "directory"],
                         ids=lambda c: c.id)
def test_features_of_the_odd_input_corpus_equal_the_in_memory_path(case, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    kwargs = dict(case.kwargs)
    as_of = kwargs.pop("as_of", None)
    expected, got = _features_both_ways(case.make(folder), tmp_path, as_of, **kwargs)
    if isinstance(expected, tuple):
        assert got == expected  # the same error class and message
    else:
        _assert_features_equal(expected, got)


@pytest.mark.parametrize("seed", range(6))
def test_features_of_random_logs_equal_the_in_memory_path_to_the_bit(seed, tmp_path):
    print(f"seed {seed}")
    frame = random_log(seed, 4_000 + 700 * seed)
    path = tmp_path / ("tx.parquet" if seed % 2 else "tx.csv")
    frame.to_parquet(path) if seed % 2 else frame.to_csv(path, index=False)
    as_of = ["2024-05-01", "2024-02-10", None][seed % 3]
    expected, got = _features_both_ways(path, tmp_path, as_of)
    assert len(expected) > 500
    _assert_features_equal(expected, got)


def test_features_csv_is_the_bytes_write_table_writes(tmp_path):
    frame = random_log(7, 3_000)
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    features = compute_features(load_transactions(path).transactions, "2024-06-30")
    features["as_of"] = features["as_of"].dt.date
    write_table(features, tmp_path / "a.csv")
    write_features_file(path, dt.date(2024, 6, 30), tmp_path / "b.csv",
                        windows_days=(30, 90, 180, 365), metadata=lambda r: {},
                        chunk_rows=100)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# --- the RFM segment in SQL ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_segments_in_sql_equal_rfm_segment(seed):
    """Heavy ties, NaN money, negative totals, cents that round either way."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3_000))
    money = np.round(rng.normal(50, 80, n), int(rng.integers(0, 4)))
    money[rng.random(n) < 0.05] = np.nan
    money[rng.random(n) < 0.05] = 19.345  # on a half cent
    features = pd.DataFrame({
        "customer_id": [f"c{i:05d}" for i in rng.permutation(n)],
        "recency_days": rng.integers(0, 40 if seed % 2 else 400, n),
        "frequency": rng.integers(1, 6 if seed % 2 else 60, n),
        "monetary_total": money,
    })
    con = duckdb.connect()
    con.create_function(_CENTS, _cents, ["DOUBLE"], "DOUBLE", type="arrow")
    con.register("given", features)
    # as _out_of_core._sort_features: the features stored sorted, the segments computed
    # on them and put in their order, read back side by side
    con.execute(f"CREATE TABLE {_SCORING} AS SELECT *, {_CENTS}(monetary_total) AS {_M_KEY} "
                "FROM given ORDER BY customer_id")
    con.execute(f"CREATE TABLE {_SEGMENTS} AS {_segment_sql(_SCORING)}")
    got = con.sql(_scoring_sql()).df()
    expected = features.sort_values("customer_id", ignore_index=True)
    expected["segment"] = rfm_segment(expected)["segment"]
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    assert got[_SEGMENT].tolist() == expected["segment"].tolist()


# --- scores --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from churnlens._pipeline import train

    folder = tmp_path_factory.mktemp("ooc")
    raw = churnlens.generate_transactions(1500, seed=11, start="2023-01-01",
                                          end="2024-06-30")
    transactions = load_transactions(raw).transactions
    path = folder / "tx.parquet"
    transactions.to_parquet(path, index=False)
    artifact = train(transactions, as_of="2024-03-31",
                     settings=load_config(overrides=FAST_MODEL)).artifact
    return path, artifact


def _in_memory(path: Path, artifact: Any, out: Path, reasons: bool = True) -> Any:
    """``churnlens score`` before: score_file, then write_table with the CLI's metadata."""
    result = score_file(path, SCORE_AS_OF, artifact, reasons=reasons)
    metadata = {"model": json.dumps(result.summary["model"], sort_keys=True),
                "as_of": result.summary["as_of"], "horizon_days": str(artifact.horizon_days)}
    write_table(result.scores, out, metadata=metadata, spreadsheet_safe=True)
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("suffix", "reasons", "chunk"), [
    ("parquet", True, 256), ("csv", True, 100_000), ("parquet", False, 1024)])
def test_score_file_equals_the_in_memory_path(trained, tmp_path, suffix, reasons, chunk):
    path, artifact = trained
    before = _in_memory(path, artifact, tmp_path / f"a.{suffix}", reasons)
    after = score_file_out_of_core(path, SCORE_AS_OF, artifact, tmp_path / f"b.{suffix}",
                                   reasons=reasons, chunk_rows=chunk, keep_risks=True)
    a, b = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
    if suffix == "csv":
        assert a.read_bytes() == b.read_bytes()
    else:
        pd.testing.assert_frame_equal(pd.read_parquet(b), pd.read_parquet(a), check_exact=True)
        assert pq.read_schema(b).equals(pq.read_schema(a), check_metadata=True)
        assert read_table_metadata(b) == read_table_metadata(a)
        assert pq.ParquetFile(b).metadata.num_row_groups == -(-len(before.scores) // chunk)
    assert after.summary == before.summary
    assert after.feature_profile == before.feature_profile
    assert after.feature_profile  # the model has a reference profile: it was compared
    # the ledger's entry: its risks table and its per-band and per-segment retention
    from churnlens._ledger import _risks_frame, _scoring_document

    risks = tmp_path / "risks.parquet"
    assert after.risks is not None
    after.risks.to_parquet(risks, index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(risks), _risks_frame(before.scores),
                                  check_exact=True)
    doc_before = _scoring_document(before, artifact, "score")
    doc_after = _scoring_document(after, artifact, "score")
    assert doc_after[0] == doc_before[0] and doc_after[2] == doc_before[2]


@pytest.mark.slow
def test_a_failure_while_scoring_leaves_nothing_and_keeps_the_previous_file(
        trained, tmp_path, monkeypatch):
    import churnlens._out_of_core as ooc

    path, artifact = trained
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"yesterday")
    calls = []
    real = ooc.score_batch

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(ooc, "score_batch", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        score_file_out_of_core(path, SCORE_AS_OF, artifact, out, chunk_rows=100,
                               keep_risks=True)
    assert out.read_bytes() == b"yesterday"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


def test_table_writer_abort_leaves_the_target_and_no_temporary(tmp_path):
    out = tmp_path / "t.parquet"
    writer = TableWriter(out, metadata={"k": "v"})
    writer.write(pd.DataFrame({"a": [1, 2]}))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with TableWriter(out, metadata={"k": "v"}) as writer:
        writer.write(pd.DataFrame({"a": [1, 2], "b": [None, None]}))
        writer.write(pd.DataFrame({"a": [3], "b": ["x"]}))  # typed by a later piece
    assert pd.read_parquet(out)["b"].tolist()[2] == "x"
    assert read_table_metadata(out) == {"k": "v"}
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


@pytest.mark.slow
def test_scoring_spills_within_a_small_memory_limit(trained, tmp_path):
    """A 64 MB engine limit and a spill folder of our own: the same scores."""
    path, artifact = trained
    settings = load_config(overrides={"engine.memory_limit": "64MB",
                                      "engine.temp_directory": str(tmp_path / "spill")})
    _in_memory(path, artifact, tmp_path / "a.parquet", False)
    score_file_out_of_core(path, SCORE_AS_OF, artifact, tmp_path / "b.parquet",
                           settings=settings, reasons=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "b.parquet"),
                                  pd.read_parquet(tmp_path / "a.parquet"), check_exact=True)
