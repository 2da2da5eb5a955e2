"""MLflow: log training runs, register models, promote by measured metric.

A run is comparable with the others of its experiment: it is named
``train <as-of> h<horizon>``, spans the whole training job (its start is when the job
started, not when logging began), logs the transactions it trained on as a dataset input
(context ``training``) whose digest is computed from every row, and its metric names
hold no date: a backtest metric is logged once per backtest as-of date, with that date
as the step (``YYYYMMDD``), so ``backtest.churnlens.auc`` is one column across runs.

Imported only by the functions that need MLflow (importing MLflow is slow), and it
configures nothing at import: the tracking URI is set from settings by each call.
Loading a registered model back is :func:`churnlens._model_loader.load_model` (the one
door, also used here to load the champion a new model is compared with).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import json
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.data.pandas_dataset import PandasDataset, from_pandas
from mlflow.pyfunc.model import PythonModel

from churnlens._artifact import ModelArtifact, save_bundle
from churnlens._config import MlflowSettings
from churnlens._evaluation import classification_metrics
from churnlens._io import json_ready
from churnlens._model_loader import load_model
from churnlens._redact import redact_uri_credentials
from churnlens._registry import sqlite_path
from churnlens.exceptions import ModelError

__all__ = [
    "ChurnlensPyfunc",
    "Registration",
    "date_step",
    "log_training_run",
    "run_name",
    "transactions_digest",
]

HIGHER_IS_BETTER = {"auc": True, "pr_auc": True, "brier": False, "log_loss": False}
# MLflow stores a dataset digest in 36 characters; the whole SHA-256 goes in a tag.
_DIGEST_CHARS = 32
_RUNTIME_DISTRIBUTIONS = ("numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "lightgbm",
                          "joblib", "duckdb", "mlflow")


class ChurnlensPyfunc(PythonModel):
    """MLflow pyfunc: a features frame in, a ``churn_risk`` column out.

    It works under ``mlflow.pyfunc.load_model`` and ``mlflow.pyfunc.spark_udf``. A
    categorical feature may come as a pandas ``Categorical`` or as text: the model reads
    either by its training categories, as :meth:`ModelArtifact.churn_risk` does.
    """

    def load_context(self, context: Any) -> None:
        """Load the bundle through the one door (digest first, then card checks)."""
        self.artifact = load_model(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None
                ) -> pd.DataFrame:
        """Churn risk for each row."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(
            model_input)
        return pd.DataFrame({"churn_risk": self.artifact.churn_risk(frame)})


def categories_as_values(frame: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """``frame`` with its categorical columns (and ``columns``) as their values.

    The pandas ``Categorical`` columns (customer attributes) and any named in
    ``columns`` become object columns of their values, missing as None: MLflow's
    signature has no categorical type, so the input example and the evaluation data go
    to it this way. The values themselves, not ``str(...)``: the model reads them by
    value, as it reads a Categorical (the same risks). ``frame`` itself is returned when
    there is nothing to convert.
    """
    names = [c for c in frame.columns
             if c in columns or isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if not names:
        return frame
    out = frame.copy()
    for name in names:
        column = out[name].astype(object)
        out[name] = column.where(column.notna(), None)
    return out


def _pyfunc_example_and_signature(example: pd.DataFrame, output: pd.DataFrame,
                                  categorical: list[str]) -> tuple[pd.DataFrame, Any]:
    """The pyfunc's input example and signature: categorical columns as their values.

    A categorical feature (``categorical``, or a pandas ``Categorical`` column of
    ``example``: a text attribute) is logged as its values (text, missing: None), and
    its signature column is MLflow's ``Any``: MLflow (3.x) has no
    rule for pandas ``category`` dtype and refuses it for a ``string`` column ("Can not
    safely convert category to <U0") before the model runs, while
    ``churnlens.features(...)`` and its Parquet files give such columns as
    ``Categorical``. ``Any`` lets both text and ``Categorical`` through; the model then
    reads them by its training categories (unseen or missing: NaN), as
    :meth:`ModelArtifact.churn_risk` does.
    """
    from mlflow.models import infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    categorical = [name for name in example.columns if name in categorical
                   or isinstance(example[name].dtype, pd.CategoricalDtype)]
    values = categories_as_values(example, categorical)
    signature = infer_signature(values, output)
    if categorical:
        signature.inputs = Schema([
            ColSpec(AnyType(), spec.name, spec.required) if spec.name in categorical
            else spec for spec in signature.inputs.inputs])
    return values, signature


def _pip_requirements() -> list[str]:
    pins = []
    for dist in _RUNTIME_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def run_name(as_of: dt.date, horizon_days: int) -> str:
    """The name of a training run: ``train 1998-03-31 h91`` (MLflow's own are random)."""
    return f"train {as_of.isoformat()} h{horizon_days}"


def date_step(day: dt.date) -> int:
    """An as-of date as a metric step, ``YYYYMMDD`` (steps sort as the dates do).

    >>> date_step(dt.date(1998, 3, 31))
    19980331
    """
    return day.year * 10_000 + day.month * 100 + day.day


def transactions_digest(transactions: pd.DataFrame) -> str:
    """SHA-256 of clean transactions, whatever their row order (64 hex digits).

    Every row counts (MLflow's own digest of a DataFrame reads the first 10,000 rows and
    skips the timestamps): each row's ``(customer_id, timestamp, amount)`` is hashed
    (pandas' 64-bit row hash, with the timestamp in nanoseconds), the hashes are sorted
    and the SHA-256 of the sorted hashes is the digest. The same purchases give the same
    digest whether they came from a CSV file, a Parquet file or a DataFrame.
    """
    canonical = pd.DataFrame({
        "customer_id": transactions["customer_id"].astype(str).to_numpy(dtype=object),
        "timestamp": transactions["timestamp"].to_numpy().astype("datetime64[ns]").view(
            np.int64),
        "amount": transactions["amount"].to_numpy(dtype=np.float64),
    })
    hashes = np.sort(pd.util.hash_pandas_object(canonical, index=False).to_numpy())
    return hashlib.sha256(hashes.tobytes()).hexdigest()


class _TransactionsDataset(PandasDataset):
    """A pandas dataset whose schema is read from its first rows.

    The clean transactions have a fixed schema (customer_id text, timestamp, amount);
    MLflow infers a DataFrame's schema by scanning every value (about 10 s per million
    rows), which would be logging time, not training time.
    """

    def __init__(self, dataset: PandasDataset) -> None:
        super().__init__(dataset.df, source=dataset.source, name=dataset.name,
                         digest=dataset.digest)

    @property
    def schema(self) -> Any:
        return mlflow.models.infer_signature(self.df.head(1000)).inputs


def _training_dataset(transactions: pd.DataFrame, source: str | None, digest: str
                      ) -> PandasDataset:
    """The transactions as an MLflow dataset: named, with its source and digest."""
    with warnings.catch_warnings():
        # MLflow warns when it cannot tell a source's kind; a DataFrame has none.
        warnings.simplefilter("ignore")
        where = {"source": redact_uri_credentials(source)} if source else {}
        dataset = from_pandas(transactions, name="transactions",
                              digest=digest[:_DIGEST_CHARS], **where)
    return _TransactionsDataset(dataset)


def _configure(settings: MlflowSettings) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri,
                               registry_uri=settings.tracking_uri)


def _experiment_id(client: mlflow.MlflowClient, settings: MlflowSettings) -> str:
    """The experiment's id, creating it with its artifacts beside a sqlite store.

    MLflow would put a new experiment's artifacts in ``./mlruns`` of whatever the
    working directory is at that moment, so a store given as
    ``sqlite:////data/mlflow.db`` left its artifacts wherever training first ran.
    Beside the database file, the store is one folder that can be moved or deleted
    whole; with the default ``sqlite:///mlflow.db`` that is ``./mlruns`` as before.
    """
    existing = client.get_experiment_by_name(settings.experiment)
    if existing is not None:
        return str(existing.experiment_id)
    database = sqlite_path(settings.tracking_uri)
    location = (database.parent / "mlruns").as_uri() if database is not None else None
    return str(client.create_experiment(settings.experiment, artifact_location=location))


@dataclasses.dataclass(frozen=True)
class Registration:
    """Where a training run went and whether its model became the champion."""

    run_id: str
    model_uri: str
    name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    metric: str
    candidate_metric: float
    champion_metric: float | None
    previous_champion_version: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_ready(dataclasses.asdict(self))  # a NaN metric becomes None


def log_training_run(
    artifact: ModelArtifact,
    settings: MlflowSettings,
    *,
    evaluation: pd.DataFrame,
    params: dict[str, Any],
    metrics: dict[str, float],
    files: dict[str, Path],
    json_documents: dict[str, Any],
    promote: bool = False,
    metrics_by_date: Mapping[dt.date, Mapping[str, float]] | None = None,
    transactions: pd.DataFrame | None = None,
    source: str | None = None,
    started_at: float | None = None,
) -> Registration:
    """Log one training run, register its model and set the champion/challenger alias.

    Parameters
    ----------
    artifact
        The trained model.
    settings
        MLflow settings (tracking URI, experiment, registered model, aliases, metric).
    evaluation
        Held-out features with a ``churned`` column: the evaluation data on which the
        new model and the current champion are compared.
    params, metrics
        Flat parameters and metrics to log (metric names without dates).
    files
        Artifacts to log: artifact sub-path -> local file (plots, report, tables).
    json_documents
        Artifacts to log as JSON: file name -> object.
    promote
        Make the new model the champion whatever its metric.
    metrics_by_date
        Metrics measured at an as-of date (the backtest): date -> name -> value, each
        logged under its name with the date as the step (:func:`date_step`); the dates
        are also the ``backtest_as_of`` tag.
    transactions
        The clean transactions the model was trained on: logged as the run's dataset
        input ``transactions`` (context ``training``), with :func:`transactions_digest`.
    source
        Where the transactions came from (a path or URI; credentials are masked), or
        None for a DataFrame.
    started_at
        When the training job started (``time.time()``): the run's start time, so that
        its duration is the job's. Default: now.

    Returns
    -------
    Registration
        The run id, the registered version, its alias and the promotion decision.
    """
    client = _configure(settings)
    experiment_id = _experiment_id(client, settings)
    mlflow.set_experiment(experiment_id=experiment_id)
    labels = evaluation["churned"].astype(np.int64).to_numpy()
    candidate = _metric(settings.promotion_metric, labels, artifact.churn_risk(evaluation))
    # The signature keeps the dtypes compute_features produces (int64 counts, float64
    # rest): MLflow refuses int64 input for a double column, so a signature cast to
    # float made pyfunc.predict(compute_features(...)) fail.
    example = evaluation.loc[:, artifact.feature_names].head(5).reset_index(drop=True)
    dated = metrics_by_date or {}
    by_date = {day: dated[day] for day in sorted(dated)}
    tags = {"churnlens_version": artifact.churnlens_version, "as_of": str(artifact.as_of),
            "horizon_days": str(artifact.horizon_days)}
    note = (f"churnlens {artifact.churnlens_version}: trained at {artifact.as_of} for a "
            f"{artifact.horizon_days}-day horizon. validation.* metrics: on the held-out "
            "latest training cutoff.")
    if by_date:
        tags["backtest_as_of"] = ",".join(day.isoformat() for day in by_date)
        note += (" backtest.* metrics: one value per backtest as-of date "
                 f"({tags['backtest_as_of']}), the date as the step (YYYYMMDD).")
    tags["mlflow.note.content"] = note  # the run's description in the MLflow UI
    digest = transactions_digest(transactions) if transactions is not None else None
    if digest is not None:
        tags["transactions_sha256"] = digest
    # The run is created with the job's start time, then filled in: its duration is the
    # training job's, not the few seconds of logging.
    created = client.create_run(
        experiment_id, start_time=int(1000 * (started_at if started_at else time.time())),
        run_name=run_name(artifact.as_of, artifact.horizon_days), tags=tags)
    with mlflow.start_run(run_id=created.info.run_id) as run, \
            tempfile.TemporaryDirectory() as tmp:
        if transactions is not None and digest is not None:
            mlflow.log_input(_training_dataset(transactions, source, digest),
                             context="training", tags={"sha256": digest})
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.log_metrics(_finite(metrics))
        for day, values in by_date.items():
            mlflow.log_metrics(_finite(values), step=date_step(day))
        for name, document in json_documents.items():
            mlflow.log_dict(document, name)
        for sub_path, path in files.items():
            folder = str(Path(sub_path).parent) if Path(sub_path).parent != Path(".") else None
            mlflow.log_artifact(str(path), artifact_path=folder)
        bundle = Path(tmp) / "bundle"
        save_bundle(artifact, bundle)
        output = pd.DataFrame({"churn_risk": artifact.churn_risk(example)})
        # the model's categorical features (the pipeline passes them as text already)
        categorical = list(getattr(artifact.model, "categories_", None) or {})
        with warnings.catch_warnings():
            # MLflow hints that integer columns cannot hold missing values; churnlens'
            # integer features (counts, days) are never missing (docs/features.md).
            warnings.filterwarnings("ignore", message=".*integer column",
                                    category=UserWarning)
            example, signature = _pyfunc_example_and_signature(example, output, categorical)
            info = mlflow.pyfunc.log_model(
                name="model",
                # Model from code: MLflow runs this file at load time rather than
                # unpickling an object (no cloudpickle, no warning).
                python_model=str(Path(__file__).with_name("_mlflow_model.py")),
                artifacts={"bundle": str(bundle)},
                code_paths=[str(Path(__file__).parent)],
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(),
            )
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, settings.registered_model,
                                    await_registration_for=60)
    outcome = _promote(client, settings, str(version.version), candidate, evaluation, labels,
                       force=promote)
    client.set_model_version_tag(settings.registered_model, str(version.version),
                                 "validation_" + settings.promotion_metric, f"{candidate:.6f}")
    return Registration(
        run_id=run_id, model_uri=info.model_uri, name=settings.registered_model,
        version=str(version.version), metric=settings.promotion_metric,
        candidate_metric=candidate, **outcome,
    )


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that are numbers (not None, NaN, infinite or a flag), as floats."""
    return {name: float(value) for name, value in metrics.items()
            if isinstance(value, int | float | np.number) and not isinstance(value, bool)
            and np.isfinite(value)}


def _param(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text[:6000]


def _metric(name: str, labels: np.ndarray, risk: np.ndarray) -> float:
    return float(classification_metrics(labels, risk)[name])


def _promote(
    client: mlflow.MlflowClient,
    settings: MlflowSettings,
    version: str,
    candidate: float,
    evaluation: pd.DataFrame,
    labels: np.ndarray,
    *,
    force: bool,
) -> dict[str, Any]:
    name, champion_alias = settings.registered_model, settings.champion_alias
    try:
        current = client.get_model_version_by_alias(name, champion_alias)
    except mlflow.exceptions.MlflowException:
        current = None
    champion_metric: float | None = None
    if current is not None and str(current.version) != version:
        try:
            champion = load_model(f"models:/{name}@{champion_alias}", settings)
            champion_metric = _metric(settings.promotion_metric, labels,
                                      champion.churn_risk(evaluation))
        except (ModelError, ValueError) as exc:
            reason_unusable = redact_uri_credentials(
                f"the champion cannot be scored on this data ({exc})")
        else:
            reason_unusable = ""
    if force:
        promoted, reason = True, "forced with --promote"
    elif current is None:
        promoted, reason = True, "no champion yet"
    elif champion_metric is None:
        promoted, reason = False, (f"{reason_unusable}; kept as challenger. Suggestion: "
                                   "compare by hand and use --promote")
    else:
        better = HIGHER_IS_BETTER[settings.promotion_metric]
        promoted = candidate >= champion_metric if better else candidate <= champion_metric
        relation = "at least" if promoted else "worse than"
        reason = (f"validation {settings.promotion_metric} {candidate:.4f} is {relation} the "
                  f"champion's {champion_metric:.4f} on the same evaluation data")
    alias = champion_alias if promoted else settings.challenger_alias
    client.set_registered_model_alias(name, alias, version)
    if promoted:
        try:  # a promoted model is no longer a challenger
            if str(client.get_model_version_by_alias(name, settings.challenger_alias).version
                   ) == version:
                client.delete_registered_model_alias(name, settings.challenger_alias)
        except mlflow.exceptions.MlflowException:
            pass
    return {"alias": alias, "promoted": promoted, "reason": reason,
            "champion_metric": champion_metric,
            "previous_champion_version": str(current.version) if current is not None else None}
