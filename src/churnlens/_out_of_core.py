"""``churnlens features`` and ``churnlens score`` on files, out of core.

The transactions are never read into pandas: :func:`churnlens._loading_sql.load_transactions_sql`
checks them in DuckDB on the files (memory limit and spill folder of the ``engine``
settings), the features are computed by DuckDB on that view
(:func:`churnlens._features.create_features_table`) and read back in batches of
``OUT_OF_CORE_CHUNK_ROWS`` customers, sorted by customer id; each batch is scored by
:func:`churnlens._scoring.score_batch` (row-wise) and appended to the output file, which
is renamed into place only when complete (:func:`churnlens._io.atomic_path`).

What needs the whole base is computed without a frame of the scores:

- the RFM segment: the quintile rule of :func:`churnlens._rules.quintile_scores` in SQL
  on the feature table (per-value counts and a running sum: the exact integer rule), the
  monetary key by :func:`churnlens._rules.monetary_cents` itself (a DuckDB function);
- the mean BG/NBD offset the reasons are centred on: a first pass over the sorted
  features, one float per customer, ``np.mean`` as the in-memory path takes it;
- the summary: the columns it reads (risk, recency, band, segment, value at risk:
  26 bytes per customer) are kept as the batches go and given to the same
  :func:`churnlens._scoring._summary`; the last actual rates come from
  :func:`churnlens._retention.retention_rates` on the view;
- the feature profile: one feature column at a time from the feature table into
  :func:`churnlens._drift.profile_against`;
- the ledger's risks table: written beside, in a temporary Parquet file, batch by batch.

So the scores, summary and profile equal the in-memory path's (:func:`score_file`) to the
bit, rows in the same order (by customer id), and the memory is the engine's limit plus a
few batches plus 26 bytes per customer (docs/scale.md).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from duckdb.func import ARROW
from duckdb.sqltypes import DOUBLE

from churnlens._artifact import ModelArtifact
from churnlens._btyd import REPEAT_FEATURES
from churnlens._io import atomic_path, csv_bytes, json_ready, parquet_table
from churnlens._loading import CleaningReport
from churnlens._loading_sql import CleanTransactions, EngineLimits, load_transactions_sql
from churnlens._rules import BANDS, SEGMENT_RULES, monetary_cents
from churnlens._scoring import (
    BASE_COLUMNS,
    CHUNK_ROWS,
    _summary,
    check_as_of,
    score_batch,
)

__all__ = ["StreamedScores", "TableWriter", "score_file_out_of_core", "write_features_file"]

Progress = Callable[[str], None]
_FEATURES = "churnlens_scoring_features"
# The features (and input features) with the segment, sorted by customer id once: the
# offset pass and the scoring read it in that order, without sorting again
_SCORING = "churnlens_scoring_sorted"
_SEGMENTS = "churnlens_scoring_segments"
_M_KEY = "churnlens_m_key"
_SEGMENT = "churnlens_segment"
_CENTS = "churnlens_cents"
# (score column, SQL of the ranked value, descending): the rule of _rules.rfm_scores
# ({t}: the table's prefix)
_RFM = (("r_score", "CAST({t}recency_days AS DOUBLE)", True),
        ("f_score", "CAST({t}frequency AS DOUBLE)", False),
        ("m_score", "{t}" + _M_KEY, False))
_SUMMARY_COLUMNS = ("churn_risk", "risk_band", "recency_days", "segment", "value_at_risk")
# Customers scored at a time out of core. Smaller than the in-memory path's CHUNK_ROWS
# (200,000): the reasons' per-tree matrices grow with the chunk, and two chunks are
# in flight (at 1M customers: peak 1.96 GB with 200,000, 1.04 GB with 32,768 and a
# 500MB engine limit, for 10% more CPU). A multiple of 64, like CHUNK_ROWS, so each
# row's risk is the same bits as the in-memory path's (see _batches).
OUT_OF_CORE_CHUNK_ROWS = 32_768


# --- writing a table in pieces ----------------------------------------------------------


class _AbortedError(Exception):
    """Thrown into :func:`churnlens._io.atomic_path` to abandon a table."""


class TableWriter:
    """Write a table to ``.parquet`` or ``.csv`` in pieces, atomically.

    The pieces go to the hidden, locked temporary ``.NAME.tmp-*`` beside the target
    that :func:`churnlens._io.atomic_path` gives (the same file system, never a
    RAM-backed ``/tmp``); :meth:`commit` renames the finished file over the target.
    On an error (or :meth:`abort`) the pieces are
    removed and the target is untouched. The file's content is what
    :func:`churnlens._io.write_table` writes for the concatenated pieces: the same
    columns, types, values and schema metadata (Parquet, written in row groups, one per
    piece), the same CSV text (one header, churnlens' CSV dialect).
    """

    def __init__(self, target: Path, *, metadata: dict[str, Any] | None = None,
                 spreadsheet_safe: bool = False) -> None:
        self.target = Path(target)
        self.metadata = metadata
        self.spreadsheet_safe = spreadsheet_safe
        self.parquet = self.target.suffix.lower() == ".parquet"
        self.rows = 0
        # The one atomic writer's locked temporary beside the target (churnlens._io
        # .atomic_path), held open for the whole stream: never in a tmpfs /tmp (RAM),
        # renamed into place on the same file system, and a temporary left by a killed
        # job is removed by the next successful write to the same target.
        self._commit_to = atomic_path(self.target)
        self._path = self._commit_to.__enter__()
        self._file: Any = open(self._path, "wb")  # noqa: SIM115 (closed by commit/abort)
        self._writer: Any = None
        self._schema: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame`` (same columns every time; its index is not written)."""
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._writer is None:
                table = parquet_table(frame, self.metadata)
                # a column with no value in the first piece: typed from the next ones
                fields = [pa.field(f.name, pa.large_string()) if pa.types.is_null(f.type)
                          else f for f in table.schema]
                self._schema = pa.schema(fields, metadata=table.schema.metadata)
                table = table.cast(self._schema)
                self._writer = pq.ParquetWriter(self._file, self._schema)
            else:
                table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
            self._writer.write_table(table)
        else:
            self._file.write(csv_bytes(frame, spreadsheet_safe=self.spreadsheet_safe,
                                       header=self.rows == 0))
        self.rows += len(frame)

    def commit(self) -> Path:
        """Finish the file and put it over the target (atomically)."""
        try:
            if self._writer is not None:
                self._writer.close()
            self._file.close()
        except BaseException as exc:
            self._commit_to.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._commit_to.__exit__(None, None, None)  # fsync, rename over the target
        return self.target

    def abort(self) -> None:
        """Remove the pieces; the target is untouched."""
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        self._file.close()
        aborted = _AbortedError("table not committed")
        self._commit_to.__exit__(_AbortedError, aborted, None)  # removes the temporary

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind: Any, *exc: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


# --- features ----------------------------------------------------------------------------


def _limits(settings: Any) -> EngineLimits:
    return EngineLimits(settings.engine.memory_limit, settings.engine.temp_directory)


def _tidy(batch: Any) -> pd.DataFrame:
    """A feature batch from DuckDB as :func:`churnlens.compute_features` gives it."""
    frame: pd.DataFrame = batch.to_pandas()
    if "as_of" in frame:
        frame["as_of"] = frame["as_of"].astype("datetime64[us]")
    for column in frame.columns:
        if column in ("customer_id", "as_of"):
            continue
        if isinstance(frame[column].dtype, pd.Int64Dtype):
            frame[column] = frame[column].astype("int64")
    return frame


def _batches(clean: CleanTransactions, sql: str, rows: int) -> Iterator[pd.DataFrame]:
    """The rows of ``sql`` in frames of exactly ``rows`` rows (the last one shorter).

    Exactly, like the in-memory path's ``iloc`` chunks: NumPy's vector kernels can
    round the last bit of a row differently in the tail of an array than in its body,
    so the same chunk boundaries (multiples of ``rows`` from the first customer) give
    the same bits.
    """
    import pyarrow as pa

    size = max(1, int(rows))
    reader = clean.connection.sql(sql).to_arrow_reader(size)
    pending: list[Any] = []
    count = 0
    for batch in reader:
        while batch.num_rows:
            take = min(size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == size:
                yield _tidy(pa.Table.from_batches(pending))
                pending, count = [], 0
    if count:
        yield _tidy(pa.Table.from_batches(pending))


def write_features_file(
    source: Any,
    as_of: dt.date,
    out: Path,
    *,
    windows_days: Any,
    metadata: Callable[[CleaningReport], dict[str, Any]],
    loader_options: dict[str, Any] | None = None,
    limits: EngineLimits | None = None,
    chunk_rows: int = CHUNK_ROWS,
    inputs: Any = None,
    horizon_days: int | None = None,
    calendar: bool | None = False,
) -> tuple[CleaningReport, int, int]:
    """``churnlens features`` out of core: the features of every customer to ``out``.

    The rows and values of :func:`churnlens.compute_features` on the pandas loader's
    frame (``as_of`` as a date), sorted by customer id, written in pieces; the file
    is renamed into place once complete (nothing at ``out`` on failure).

    Parameters
    ----------
    source
        A Parquet or CSV file, a glob or a directory of Parquet files.
    as_of
        The as-of date (rows after it are left out, as by the loader).
    out
        The ``.parquet`` or ``.csv`` file to write.
    windows_days
        The activity windows.
    metadata
        The Parquet metadata, from the cleaning report.
    loader_options
        Keyword arguments of :func:`churnlens._loading_sql.load_transactions_sql`
        (``settings.data.loader_options()``).
    limits
        The engine's memory limit and spill folder.
    chunk_rows
        Customers read back and written at a time.
    inputs
        The customer and event tables (:class:`churnlens._input_features.InputTables`):
        given, the input features of every group the data allows
        (:func:`churnlens._input_features.learn_input_spec` at ``as_of``: the purchase
        details when optional columns are mapped, the events, the attributes, and with
        ``calendar`` the calendar) follow the transactions' features. ``None``: the
        transactions' features only.
    horizon_days
        The horizon of the calendar features (needed with ``inputs``).
    calendar
        The calendar group: off by default, as in training (``True``: on; ``None``: on
        when the history spans a year plus ``horizon_days``).

    Returns
    -------
    tuple
        The cleaning report, the rows written and the feature columns.
    """
    from churnlens._features import create_features_table

    with load_transactions_sql(source, **(loader_options or {}), as_of=as_of,
                               limits=limits) as clean:
        create_features_table(clean, as_of, _FEATURES, windows_days=windows_days)
        select = f"SELECT * FROM {_FEATURES} ORDER BY customer_id"
        spec = None
        if inputs is not None:
            from churnlens._input_features import learn_input_spec

            if horizon_days is None:
                from churnlens.exceptions import ChurnlensError

                raise ChurnlensError("write_features_file: inputs need horizon_days (the "
                                     "calendar features' window). Suggestion: pass it.")
            spec = learn_input_spec(clean, inputs, as_of=as_of, horizon_days=horizon_days,
                                    calendar=calendar)
            if spec.groups:
                _create_inputs_table(clean, as_of, spec, inputs, [])
                select = (f"SELECT f.*, i.* EXCLUDE (customer_id, as_of) FROM {_FEATURES} AS f "
                          f"LEFT JOIN {_INPUTS} AS i ON i.customer_id = f.customer_id "
                          "ORDER BY f.customer_id")
        width = 0
        with TableWriter(out, metadata=metadata(clean.report)) as writer:
            for frame in _batches(clean, select, chunk_rows):
                frame["as_of"] = frame["as_of"].dt.date
                width = len(frame.columns) - 2
                writer.write(frame)
            if writer.rows == 0:  # no customer: the header (or schema) still
                from churnlens._features import feature_names

                empty = pd.DataFrame(columns=["customer_id", "as_of",
                                              *feature_names(windows_days),
                                              *(spec.feature_names() if spec else [])])
                width = len(empty.columns) - 2
                writer.write(empty)
        return clean.report, writer.rows, width


# --- scores ------------------------------------------------------------------------------


class _RisksFile:
    """The ledger's risks table, written batch by batch to a temporary Parquet file;
    ``to_parquet`` copies it where the ledger wants it (what ``DataFrame.to_parquet``
    would write for the whole table)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "risks.parquet"
        self._writer = TableWriter(self.path)

    def write(self, scores: pd.DataFrame) -> None:
        self._writer.write(pd.DataFrame({
            "customer_id": scores["customer_id"].astype(str).to_numpy(dtype=object),
            "churn_risk": scores["churn_risk"].to_numpy(dtype=np.float64),
            "risk_band": scores["risk_band"].astype(str).to_numpy(dtype=object),
            "segment": scores["segment"].astype(str).to_numpy(dtype=object),
            "recency_days": scores["recency_days"].to_numpy(dtype=np.int64),
        }))

    def close(self, ok: bool) -> None:
        if ok:
            if self._writer.rows == 0:
                self.write(pd.DataFrame({c: [] for c in (
                    "customer_id", "churn_risk", "risk_band", "segment", "recency_days")}))
            self._writer.commit()
        else:
            self._writer.abort()

    def to_parquet(self, path: Any, index: bool = False) -> None:
        shutil.copyfile(self.path, path)


@dataclasses.dataclass
class StreamedScores:
    """What :func:`score_file_out_of_core` returns: the scores are in ``output``.

    Attributes
    ----------
    output
        The file written (one row per customer, by customer id).
    summary
        As :attr:`churnlens._scoring.ScoreResult.summary` (cleaning report included).
    scores
        Only the columns of the scores the summary and the ledger read
        (``churn_risk, risk_band, recency_days, segment, value_at_risk``), in file order.
    feature_profile
        As :attr:`churnlens._scoring.ScoreResult.feature_profile`.
    risks
        The ledger's risks table (``customer_id`` as text, ``churn_risk``,
        ``risk_band``, ``segment``, ``recency_days``) as a file, when asked for.
    """

    output: Path
    summary: dict[str, Any]
    scores: pd.DataFrame
    feature_profile: dict[str, Any] | None
    risks: _RisksFile | None = None
    features: None = None
    _folder: str | None = None

    def __post_init__(self) -> None:
        if self._folder is not None:
            weakref.finalize(self, shutil.rmtree, self._folder, True)


def score_file_out_of_core(
    source: Any,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    out: Path,
    *,
    settings: Any = None,
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
    chunk_rows: int = OUT_OF_CORE_CHUNK_ROWS,
    spreadsheet_safe: bool = True,
    keep_risks: bool = False,
    inputs: Any = None,
) -> StreamedScores:
    """Score a transactions file out of core and write the scores to ``out``.

    As :func:`churnlens._scoring.score_file` followed by
    :func:`churnlens._io.write_table` (``spreadsheet_safe``, the score file's metadata:
    model card, as-of date, horizon), with the same rows, values and order, without
    holding the transactions or the scores in memory (module docstring). Nothing is
    left at ``out`` on failure.

    Parameters
    ----------
    source
        A Parquet or CSV file, a glob or a directory of Parquet files.
    as_of, artifact, settings, allow_past, reasons, progress, chunk_rows
        As for :func:`churnlens._scoring.score_file`; ``settings.engine`` bounds the
        engine's memory.
    out
        The ``.parquet`` or ``.csv`` file to write.
    keep_risks
        Also write the ledger's risks table (``StreamedScores.risks``).
    inputs
        The customer and event tables (:class:`churnlens._input_features.InputTables`),
        as for :func:`churnlens._scoring.score_file`: checked before any work. The input
        features of a model trained with richer inputs are computed once by DuckDB on the
        view and kept in a DuckDB table joined to the feature table (docs/scale.md).
    """
    from churnlens._config import Settings
    from churnlens._features import create_features_table
    from churnlens._scoring import check_inputs, mapped_details

    settings = settings or Settings()
    say = progress or (lambda _m: None)
    day = check_as_of(artifact, as_of, allow_past=allow_past)
    used = check_inputs(artifact, inputs, detail_columns=mapped_details(settings))
    spec = _input_spec(artifact)
    notes: list[str] = []
    model_card = json_ready({
        "name": artifact.name, "version": artifact.version, "alias": artifact.alias,
        "as_of": str(artifact.as_of), "run_id": artifact.run_id,
        "horizon_days": artifact.horizon_days})
    metadata = {"model": json.dumps(model_card, sort_keys=True), "as_of": str(day),
                "horizon_days": str(artifact.horizon_days)}
    if spec is not None and "attributes" in spec.groups:
        from churnlens._scoring import attributes_summary

        # which columns are the customers' attributes (at-risk --attribute reads it)
        metadata["attributes"] = json.dumps(attributes_summary(spec))
    say("loading and validating transactions (out of core)")
    with load_transactions_sql(source, **settings.data.loader_options(), as_of=day,
                               limits=_limits(settings)) as clean:
        con = clean.connection
        con.create_function(_CENTS, _cents, [DOUBLE], DOUBLE, type=ARROW, side_effects=False)
        # before the features: its hash tables are freed before the feature table is
        # made, so the two do not add up in memory (docs/scale.md)
        say("measuring the last actual retention")
        last_actual = _last_actual(clean, day, artifact.horizon_days)
        say(f"computing features at {day}")
        richer = spec is not None and bool(spec.groups)
        if not richer:  # stored sorted by customer id at once (no sort of its own)
            con.execute("SET preserve_insertion_order = true")
        n = create_features_table(clean, day, _SCORING if not richer else _FEATURES,
                                  windows_days=artifact.windows_days,
                                  extra_columns=f", {_CENTS}(monetary_total) AS {_M_KEY}",
                                  sorted_by_customer=not richer)
        unseen = None
        if spec.groups:
            say("computing the input features (customer, event and purchase-detail tables)")
            unseen = _create_inputs_table(clean, day, spec, used, notes)
        _sort_features(clean, richer)
        center = None
        if reasons and n:
            say("measuring the mean BG/NBD offset of the base")
            center = _offset_center(clean, artifact, chunk_rows)
        say(f"scoring {n:,} customers" + (" with reasons" if reasons else ""))
        folder = tempfile.mkdtemp(prefix="churnlens-scores-") if keep_risks else None
        risks = _RisksFile(Path(folder)) if folder else None
        kept: dict[str, list[Any]] = {c: [] for c in _SUMMARY_COLUMNS}
        writer = TableWriter(out, metadata=metadata, spreadsheet_safe=spreadsheet_safe)
        try:
            for scores in _scored(clean, day, artifact, settings.scoring, reasons, center,
                                  chunk_rows, n, spec=spec, inputs=used):
                writer.write(scores)
                if risks is not None:
                    risks.write(scores)
                for column in _SUMMARY_COLUMNS:
                    kept[column].append(_compact(column, scores[column]))
                say(f"scored {writer.rows:,} of {n:,} customers")
            say("summarising")
            profile = _feature_profile(clean, artifact, inputs=bool(spec.groups))
            columns = _summary_columns(kept)
            del kept
            summary = _summary(columns, artifact, day, last_actual)
            summary["cleaning"] = json_ready(clean.report.to_dict())
            if spec.groups:
                from churnlens._scoring import inputs_summary

                summary["inputs"] = inputs_summary(spec, used, notes, unseen)
            if risks is not None:
                risks.close(True)
            say(f"writing {out}")
            writer.commit()  # the last step: nothing at ``out`` if anything failed
        except BaseException:
            writer.abort()
            if risks is not None:
                risks.close(False)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
    return StreamedScores(output=out, summary=summary, scores=columns,
                          feature_profile=profile, risks=risks, _folder=folder)


_INPUTS = "churnlens_scoring_inputs"


def _input_spec(artifact: ModelArtifact) -> Any:
    from churnlens._scoring import _spec

    return _spec(artifact)


def _create_inputs_table(clean: CleanTransactions, day: dt.date, spec: Any, inputs: Any,
                         notes: list[str]) -> dict[str, int]:
    """The input features at ``day``
    (:func:`churnlens._input_features.create_input_features_table`: run by DuckDB on the
    view, kept in the DuckDB table ``_INPUTS``, never read into pandas whole); returns
    the unseen categories (``{column: rows}``) and says them in ``notes``."""
    from churnlens._input_features import create_input_features_table
    from churnlens._scoring import unseen_warnings

    _rows, unseen = create_input_features_table(clean, day, spec, inputs, _INPUTS,
                                                date_column="as_of")
    notes.extend(unseen_warnings(unseen))
    return dict(unseen)


def _cents(values: Any) -> Any:
    """:func:`churnlens._rules.monetary_cents` as a DuckDB (Arrow) function."""
    import pyarrow as pa

    x = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return pa.array(monetary_cents(x), type=pa.float64())


def _last_actual(clean: CleanTransactions, as_of: dt.date, horizon_days: int) -> Any:
    """The actual retention of ``(as_of - H, as_of]`` with ``W = H``, on the view (as
    :func:`churnlens._scoring._last_actual` on the frame)."""
    from churnlens._retention import retention_rates

    return retention_rates(clean, as_of - dt.timedelta(days=horizon_days), as_of,
                           window_days=horizon_days)


def _offset_center(clean: CleanTransactions, artifact: ModelArtifact, rows: int) -> float:
    """``np.mean(model.bgnbd_offset(features))`` over the base, in customer-id order.

    By chunks of ``rows`` customers (a multiple of the vector width, as ``CHUNK_ROWS``:
    each row's offset is then the bits the whole-array call gives), one float per
    customer kept for the mean (the same pairwise sum as the in-memory path's).
    """
    model = artifact.model
    if not getattr(model, "use_bgnbd", True):
        return float(np.mean(np.zeros(1)))  # bgnbd_offset is all zeros: the mean is 0.0
    # BG/NBD reads the repeat features only (_btyd.repeat_features_to_data), and the
    # seasonal clock the scoring date (churnlens._season.horizons_of)
    columns = ", ".join(f'"{name}"' for name in REPEAT_FEATURES)
    parts = [np.asarray(model.bgnbd_offset(frame), dtype=np.float64) for frame in _batches(
        clean, f"SELECT customer_id, as_of, {columns} FROM {_SCORING}", rows)]
    return float(np.mean(np.concatenate(parts)))


def _sort_features(clean: CleanTransactions, inputs: bool) -> None:
    """The tables ``_SCORING`` (the features, and input features, sorted by customer id)
    and ``_SEGMENTS`` (each customer's segment, in the same order).

    The base is sorted once: without input features ``create_features_table`` already
    stored ``_SCORING`` sorted; with them, the feature table and the input features are
    joined and sorted into ``_SCORING`` here, and the unsorted tables dropped. The offset
    pass, the scoring and the profile then read ``_SCORING`` in its stored order
    (``preserve_insertion_order`` on for the rest of the connection: a plain scan, and a
    ``POSITIONAL JOIN`` with ``_SEGMENTS``, return the rows in that order), so the
    features are not held beside a sorted copy while the scores are computed. The
    segments need the whole base's quintiles (joins): they are computed from the sorted
    table and put back in its order by row number (a sort of one small column).
    """
    con = clean.connection
    con.execute("SET preserve_insertion_order = true")
    if inputs:
        con.execute(f"CREATE TEMP TABLE {_SCORING} AS SELECT * FROM ("
                    # the input table's own as_of (date_column) is f.as_of: kept once
                    f"SELECT f.*, i.* EXCLUDE (customer_id, as_of) FROM {_FEATURES} AS f "
                    f"LEFT JOIN {_INPUTS} AS i ON i.customer_id = f.customer_id"
                    ") ORDER BY customer_id")
        con.execute(f"DROP TABLE {_FEATURES}")
        con.execute(f"DROP TABLE IF EXISTS {_INPUTS}")
    con.execute(f"CREATE TEMP TABLE {_SEGMENTS} AS {_segment_sql(_SCORING)}")


def _scoring_sql() -> str:
    """The rows to score, in customer-id order: the sorted features with their segment."""
    return (f"SELECT f.* EXCLUDE ({_M_KEY}), s.{_SEGMENT} "
            f"FROM {_SCORING} AS f POSITIONAL JOIN {_SEGMENTS} AS s")


def _segment_sql(table: str) -> str:
    """Each customer's segment (``_rules.rfm_segment``'s rule) on the feature table
    ``table``, in its row order."""
    joins, scores = [], {}
    for name, expression, descending in _RFM:
        alias = f"churnlens_{name}"
        value = expression.format(t="")
        order = "DESC" if descending else "ASC"
        # v -> ceil(5 * average rank / n) in integers (quintile_scores): lo and hi are the
        # first and last 1-based positions of v's ties
        joins.append(f"""LEFT JOIN (
    SELECT v, CAST((5 * (2 * hi - c + 1) + 2 * n - 1) // (2 * n) AS INTEGER) AS score
    FROM (SELECT v, c, SUM(c) OVER (ORDER BY v {order} ROWS BETWEEN UNBOUNDED PRECEDING
                                    AND CURRENT ROW) AS hi,
                 SUM(c) OVER () AS n
          FROM (SELECT {value} AS v, count(*) AS c FROM {table}
                WHERE {value} IS NOT NULL AND NOT isnan({value}) GROUP BY v))
) AS {alias} ON {alias}.v = {expression.format(t="f.")}""")
        scores[name[0].upper()] = f"coalesce({alias}.score, 1)"
    cases = " ".join(f"WHEN {rule.sql(scores)} THEN '{rule.segment}'" for rule in SEGMENT_RULES)
    return (f"SELECT CASE {cases} END AS {_SEGMENT}\nFROM {table} AS f\n"
            + "\n".join(joins) + "\nORDER BY f.rowid")


def _scored(clean: CleanTransactions, day: dt.date, artifact: ModelArtifact,
            settings: Any, reasons: bool, center: float | None, rows: int, n: int,
            *, spec: Any = None, inputs: Any = None) -> Iterator[pd.DataFrame]:
    """The score batches, in customer-id order; two in flight with reasons (their NumPy
    work releases the GIL), as :func:`churnlens._scoring._score_features` does. With a
    ``spec`` that has groups, the input features are joined (categorised as the
    in-memory path's) and the attribute columns added."""
    at = BASE_COLUMNS.index("segment")
    richer = spec is not None and bool(spec.groups)
    if richer:
        from churnlens._scoring import attribute_table

        table = attribute_table(spec, inputs, day)  # once: the rows valid on ``day``

    def run(frame: pd.DataFrame) -> pd.DataFrame:
        segment = frame.pop(_SEGMENT).to_numpy(dtype=object)
        if richer:
            from churnlens._input_features import categorise_inputs

            frame = categorise_inputs(frame, spec)
        scores = score_batch(frame, day, artifact, settings=settings, reasons=reasons,
                             offset_center=center)
        scores.insert(at, "segment", segment)
        if richer:
            from churnlens._scoring import attribute_columns

            attributes = attribute_columns(spec, inputs, scores["customer_id"], day,
                                           table=table)
            for column in attributes.columns:
                scores[column] = attributes[column].to_numpy()
        return scores

    if n == 0:
        from churnlens._features import feature_names

        empty = pd.DataFrame({c: pd.Series(dtype="int64" if c in (
            "recency_days", "frequency") else "float64") for c in feature_names(
                artifact.windows_days)})
        empty.insert(0, "customer_id", pd.Series(dtype=object))
        empty.insert(1, "as_of", pd.Series(dtype="datetime64[us]"))
        if richer:
            for name in spec.feature_names():
                empty[name] = pd.Series(dtype="float64")
        empty[_SEGMENT] = pd.Series(dtype=object)
        yield run(empty)
        return
    workers = 2 if reasons else 1
    pending: collections.deque[Any] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for frame in _batches(clean, _scoring_sql(), rows):
            pending.append(pool.submit(run, frame))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_LABELS = {"risk_band": list(BANDS), "segment": [rule.segment for rule in SEGMENT_RULES]}


def _compact(column: str, values: pd.Series) -> np.ndarray:
    """A batch's summary column, kept small and on its own (not a view of the batch):
    bands and segments as one-byte category codes."""
    if column in _LABELS:
        return np.asarray(pd.Categorical(values.to_numpy(dtype=object),
                                         categories=_LABELS[column]).codes, dtype=np.int8)
    return values.to_numpy(copy=True)


def _summary_columns(kept: dict[str, list[Any]]) -> pd.DataFrame:
    """The summary's columns of the whole base, from the batches' (bands and segments as
    categoricals: one byte per customer)."""
    def joined(column: str) -> np.ndarray:
        parts = kept.pop(column)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    frame = pd.DataFrame({
        "churn_risk": joined("churn_risk").astype(np.float64, copy=False),
        "risk_band": pd.Categorical.from_codes(joined("risk_band"), _LABELS["risk_band"]),
        "recency_days": joined("recency_days"),
        "segment": pd.Categorical.from_codes(joined("segment"), _LABELS["segment"]),
        "value_at_risk": joined("value_at_risk").astype(np.float64, copy=False),
    })
    return frame


def _feature_profile(clean: CleanTransactions, artifact: ModelArtifact, *,
                     inputs: bool = False) -> dict[str, Any] | None:
    """:func:`churnlens._drift.profile_against` on the feature table (and, with
    ``inputs``, the input feature table), one column at a time (the bins count and the
    quantiles sort every value: the same numbers)."""
    from churnlens._drift import profile_against

    reference = getattr(artifact.model, "reference_profile_", None)
    if not reference:
        return None
    con = clean.connection
    table_of: dict[str, str] = {}
    # the features and input features, in the sorted table (_sort_features)
    for table in (_SCORING,):
        for row in con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall():
            if str(row[0]) != _M_KEY:
                table_of.setdefault(str(row[0]), table)
    out: dict[str, Any] = {}
    for name, ref in reference.items():
        if name not in table_of or name in ("customer_id", "as_of"):
            continue
        column = con.execute(f'SELECT "{name}" FROM {table_of[name]}').fetchnumpy()[name]
        values = np.ma.filled(column.astype(np.float64), np.nan) if isinstance(
            column, np.ma.MaskedArray) else np.asarray(column, dtype=np.float64)
        out.update(profile_against(pd.DataFrame({name: values}), {name: ref}))
    return out
