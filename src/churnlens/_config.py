"""One typed settings object for every stage, read from YAML and CLI overrides.

Nothing here touches MLflow, the file system or logging at import time: entry points
call :func:`load_config` and pass the result down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from churnlens.exceptions import ConfigError

if TYPE_CHECKING:
    from churnlens._model import ChurnModel

__all__ = [
    "DataSettings",
    "EngineSettings",
    "FeatureSettings",
    "MlflowSettings",
    "ModelSettings",
    "MonitoringSettings",
    "ScoringSettings",
    "Settings",
    "SnapshotSettings",
    "ValueSettings",
    "load_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataSettings(_Strict):
    """Column names of the transactions and how to read them.

    ``delimiter`` is the CSV field separator (default: ``,``, a tab for ``.tsv``).
    ``max_staleness_days``: an as-of date more than this many days after the data's last
    day is refused (the feed may have stopped). The optional columns (``order_col``,
    ``quantity_col``, ``category_col``, ``channel_col``, ``discount_col``; ``None``: not
    read) are kept as ``order_id``, ``quantity``, ``category``, ``channel`` and
    ``discount``, and feed the ``details`` features (``docs/features.md``).
    """

    customer_col: str = "customer_id"
    time_col: str = "timestamp"
    amount_col: str = "amount"
    order_col: str | None = Field(default=None, min_length=1)
    quantity_col: str | None = Field(default=None, min_length=1)
    category_col: str | None = Field(default=None, min_length=1)
    channel_col: str | None = Field(default=None, min_length=1)
    discount_col: str | None = Field(default=None, min_length=1)
    time_format: str | None = None
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    # An as-of date more than this many days after the data's last day is refused: the
    # feed may have stopped (``--max-staleness-days``).
    max_staleness_days: int = Field(default=7, ge=0)

    def loader_options(self) -> dict[str, Any]:
        """These settings as keyword arguments of :func:`churnlens.load_transactions`."""
        return self.model_dump()


def _default_windows() -> tuple[int, ...]:
    # Defined once, beside the feature SQL; read when settings are made, not when this
    # module is imported (the feature modules import DuckDB and pandas).
    from churnlens._features_sql import DEFAULT_WINDOWS_DAYS

    return DEFAULT_WINDOWS_DAYS


class FeatureSettings(_Strict):
    """Windows (days) for the windowed counts and spend (default: the library's)."""

    windows_days: tuple[int, ...] = Field(default_factory=_default_windows)

    @field_validator("windows_days", mode="before")
    @classmethod
    def _list_is_a_tuple(cls, value: Any) -> Any:
        # YAML has lists, not tuples; strict validation (see load_config) checks the items
        return tuple(value) if isinstance(value, list) else value

    @field_validator("windows_days")
    @classmethod
    def _positive_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w <= 0 for w in value):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        return tuple(sorted(set(value)))


class SnapshotSettings(_Strict):
    """Training cutoffs: ``count`` cutoffs, ``every`` apart, the latest at as-of - horizon."""

    every: str = "month"
    count: int = Field(default=12, ge=2, le=120)
    validation_count: int = Field(default=1, ge=1, le=12)

    @field_validator("every")
    @classmethod
    def _frequency(cls, value: str) -> str:
        if value in ("week", "month", "quarter") or re.fullmatch(r"[1-9]\d*d", value):
            return value
        raise ValueError("every must be one of week, month, quarter or '<N>d' (e.g. 28d)")

    @model_validator(mode="after")
    def _enough_for_training(self) -> SnapshotSettings:
        if self.validation_count >= self.count:
            raise ValueError("validation_count must be smaller than count")
        return self


class ModelSettings(_Strict):
    """The churnlens model (BG/NBD + LightGBM + logistic blend) and drift handling.

    The one place where the model's parameters are configured: :meth:`build` makes the
    :class:`~churnlens.ChurnModel` from them, so training never lists them again.
    The defaults equal :class:`~churnlens.ChurnModel`'s own (a test checks it); they
    are written here, not read from the model, so that reading settings does not
    import scikit-learn.
    """

    n_estimators: int = Field(default=3000, ge=1, le=20_000)
    learning_rate: float = Field(default=0.03, gt=0, le=1)
    num_leaves: int = Field(default=5, ge=2, le=4096)
    min_child_samples: int = Field(default=400, ge=1)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    early_stopping_rounds: int = Field(default=50, ge=1)
    logistic_weight: float = Field(default=0.5, ge=0, le=1)
    calibration: Literal["none", "isotonic", "sigmoid"] = "none"
    use_bgnbd: bool = True
    select_blend: bool = True
    season_level: bool = False
    recency_half_life_snapshots: float | None = Field(
        default=None, gt=0)
    random_state: int = 0
    n_jobs: int | None = Field(default=None, ge=1)

    def build(self, *, horizon_days: int, validation_cutoffs: int) -> ChurnModel:
        """An unfitted :class:`~churnlens.ChurnModel` with these parameters.

        Parameters
        ----------
        horizon_days
            The churn horizon (``Settings.horizon_days``).
        validation_cutoffs
            Latest snapshot cutoffs held out for early stopping and calibration
            (``Settings.snapshots.validation_count``).

        Examples
        --------
        >>> model = ModelSettings(n_estimators=10).build(horizon_days=30, validation_cutoffs=1)
        >>> model.n_estimators, model.horizon_days
        (10, 30)
        """
        from churnlens._model import ChurnModel

        return ChurnModel(horizon_days=horizon_days, validation_cutoffs=validation_cutoffs,
                          **self.model_dump())


class MlflowSettings(_Strict):
    """Where runs and models go."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "churnlens"
    registered_model: str = "churnlens"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    promotion_metric: Literal["auc", "pr_auc", "brier", "log_loss"] = "auc"
    enabled: bool = True


class ValueSettings(_Strict):
    """The customer lifetime value of the scores (``docs/value.md``).

    ``clv_months``: months of 30.4375 days the discounted expected spend ``clv`` sums
    over; ``annual_discount_rate``: its yearly discount rate (0.10 for 10%), applied
    monthly as ``(1 + rate)^(1/12) - 1``.
    """

    clv_months: int = Field(default=12, ge=1, le=1200)
    annual_discount_rate: float = Field(default=0.10, ge=0, le=10)


class ScoringSettings(_Strict):
    """Risk bands: ``high`` if risk >= high, ``medium`` if >= medium, else ``low``; and
    the CLV's period and discount rate (``value``)."""

    high_risk: float = Field(default=0.7, gt=0, lt=1)
    medium_risk: float = Field(default=0.4, gt=0, lt=1)
    value: ValueSettings = ValueSettings()

    @model_validator(mode="after")
    def _ordered(self) -> ScoringSettings:
        if self.medium_risk >= self.high_risk:
            raise ValueError("medium_risk must be below high_risk")
        return self


class MonitoringSettings(_Strict):
    """The prediction ledger and the alarms of ``churnlens monitor`` (docs/monitoring.md).

    ``ledger``: record every scoring (and campaign list) as a run of ``experiment`` in
    the MLflow tracking store (``mlflow.tracking_uri``); ``--no-ledger`` or
    ``CHURNLENS_LEDGER=off`` turn it off for one run. ``psi_alert``: a feature drifts
    when its population stability index against the training snapshots exceeds this
    (0.25: the usual "act" level). ``auc_drop_alert``: realized ROC AUC this far below
    the model's own backtest alerts. ``importance_floor``: drift alerts only on a feature
    with at least this share of the model's mean absolute contribution.
    """

    ledger: bool = True
    experiment: str = Field(default="churnlens-monitoring", min_length=1)
    psi_alert: float = Field(default=0.25, gt=0)
    auc_drop_alert: float = Field(default=0.05, gt=0, lt=1)
    importance_floor: float = Field(default=0.05, ge=0, lt=1)


class EngineSettings(_Strict):
    """The embedded engine (DuckDB) when it reads files out of core (docs/scale.md).

    ``memory_limit``: DuckDB's memory limit, a size (``4GB``, ``500MB``), a share of RAM
    (``50%``) or ``auto`` (the default: half the RAM, at most 4 GiB; DuckDB's own default
    is 80%); beyond it DuckDB spills to ``temp_directory`` (``null``: a fresh folder in
    the system's temporary directory, removed afterwards).
    """

    memory_limit: str = Field(
        default="auto", pattern=r"^\s*(\d+(\.\d+)?\s*(%|[KMGT]i?B|B)|[Aa][Uu][Tt][Oo])\s*$")
    temp_directory: str | None = Field(default=None, min_length=1)


class TrainingSettings(_Strict):
    """How many training snapshot rows reach the model (docs/scale.md).

    ``max_snapshot_rows``: the labelled snapshots (features and label of every customer
    at every cutoff) are kept by the engine and sampled to at most this many rows,
    stratified by cutoff and label, before LightGBM; ``0`` or ``null``: every row.
    ``sample_seed``: seed of the sampling hash (the same rows on DuckDB and Spark).
    """

    max_snapshot_rows: int | None = Field(default=2_000_000, ge=0)
    sample_seed: int = Field(default=0, ge=0)


class Settings(_Strict):
    """Every setting of churnlens, validated. See ``configs/default.yaml``.

    Attributes
    ----------
    horizon_days
        Days after the as-of date in which a customer must buy not to count as churned.
    backtest_steps
        Backtests logged with each training run, at as-of minus 1, 2, ... horizons.
    data
        Column names and timestamp format (:class:`DataSettings`).
    features
        Feature windows (:class:`FeatureSettings`).
    snapshots
        Training cutoffs (:class:`SnapshotSettings`).
    model
        The churn model and drift handling (:class:`ModelSettings`).
    mlflow
        Tracking, registry and promotion (:class:`MlflowSettings`).
    scoring
        Risk band thresholds (:class:`ScoringSettings`).
    monitoring
        The prediction ledger and monitoring alarms (:class:`MonitoringSettings`).
    engine
        Memory limit and spill folder of out-of-core reads (:class:`EngineSettings`).
    training
        Sampling of the training snapshots (:class:`TrainingSettings`).
    """

    horizon_days: int = Field(default=91, ge=1, le=3660)
    backtest_steps: int = Field(default=1, ge=0, le=12)
    data: DataSettings = DataSettings()
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    snapshots: SnapshotSettings = SnapshotSettings()
    model: ModelSettings = ModelSettings()
    mlflow: MlflowSettings = MlflowSettings()
    scoring: ScoringSettings = ScoringSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    engine: EngineSettings = EngineSettings()  # memory limit and spill folder (scale.md)
    training: TrainingSettings = TrainingSettings()  # snapshot sampling (scale.md)

    def build_model(self) -> ChurnModel:
        """The unfitted :class:`~churnlens.ChurnModel` these settings describe.

        Examples
        --------
        >>> Settings().build_model().horizon_days
        91
        """
        return self.model.build(horizon_days=self.horizon_days,
                                validation_cutoffs=self.snapshots.validation_count)

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        """A copy with dotted-key overrides applied (``{"model.learning_rate": 0.1}``)."""
        return _validate(_merge(self.model_dump(), _nest(overrides)), source="overrides")


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    option_names: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings from a YAML file (default: the packaged defaults) plus overrides.

    Validation is strict: a value must have the type of its key (``true`` is not a
    number, ``"12"`` is not an integer), a key may appear once per mapping, and the
    file must be UTF-8.

    Parameters
    ----------
    path
        A YAML file; keys not given keep their defaults. Unknown keys are errors.
    overrides
        Dotted keys, for example ``{"horizon_days": 30, "mlflow.enabled": False}``;
        ``None`` values are ignored (an option the user did not give).
    option_names
        The name the user gave each override (``{"horizon_days": "--horizon-days"}``),
        so that a bad value is blamed on the option, not on the file or the defaults.

    Returns
    -------
    Settings
        The validated settings.

    Raises
    ------
    ConfigError
        For a missing or non-UTF-8 file, invalid YAML, a repeated key, an unknown key or
        a bad value; the message names every problem, its key and where it came from.

    Examples
    --------
    >>> load_config(overrides={"horizon_days": 30}).horizon_days
    30
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = _read_yaml(Path(path))
        _validate(data, source=source)  # the file's own problems are the file's
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not given:
        return _validate(data, source=source)
    names = dict(option_names or {})
    blamed = ", ".join(names.get(key, key) for key in given)
    return _validate(_merge(data, _nest(given)), source=f"the options given ({blamed})",
                     names=names)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key repeated in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{self.name}: the key {key!r} appears twice (lines {seen[key]} and "
                    f"{line}); YAML would silently keep the last. Suggestion: keep one."
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(file: Path) -> dict[str, Any]:
    if file.is_dir():
        raise ConfigError(f"{file} is a folder, not a config file. Suggestion: name the "
                          "YAML file itself (for example configs/default.yaml).")
    if not file.is_file():
        raise ConfigError(f"{file}: no such config file. Suggestion: check the path.")
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: not UTF-8 text (byte {exc.start}: {exc.reason}). Suggestion: save "
            "the config file as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror or exc}). Suggestion: check "
                          "its permissions.") from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(file)
    try:
        loaded = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({' '.join(str(exc).split())}). "
                          "Suggestion: compare with configs/default.yaml.") from None
    finally:
        loader.dispose()
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of settings. "
                          "Suggestion: compare with configs/default.yaml.")
    return loaded or {}


def _validate(data: dict[str, Any], *, source: str,
              names: Mapping[str, str] | None = None) -> Settings:
    try:
        # strict: no bool for a number, no text for a number (YAML's types are kept)
        return Settings.model_validate(data, strict=True)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            where = (names or {}).get(where, where)
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key {where!r}")
            else:
                problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(
            f"invalid configuration in {source}: " + "; ".join(problems)
            + ". Suggestion: compare with configs/default.yaml, which lists every key."
        ) from None


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
