"""churnlens: churn prediction for purchase histories, paired with actual retention.

Public API (everything else is private and may change):

>>> import churnlens
>>> tx = churnlens.generate_transactions(100, seed=0)
>>> clean, report = churnlens.load_transactions(tx)
>>> report.customers
100
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # static analysers see every public name
    from churnlens._artifact import (
        ModelArtifact,
        save_bundle,
    )
    from churnlens._bgnbd import (
        BGNBDModel,
        BGNBDParams,
        bgnbd_expected_purchases,
        bgnbd_fit,
        bgnbd_log_likelihood,
        bgnbd_p_alive,
        bgnbd_prob_purchase_in,
    )
    from churnlens._campaign import (
        CampaignResult,
        analyse_campaign,
        assign_control_group,
        read_campaign_list,
    )
    from churnlens._config import (
        Settings,
        load_config,
    )
    from churnlens._evaluation import (
        PredictedRetention,
        calibration_table,
        classification_metrics,
        lift_table,
        predict_retention,
    )
    from churnlens._features import (
        FEATURES,
        Feature,
        build_snapshots,
        compute_features,
        compute_labels,
        feature_names,
        feature_table_markdown,
    )
    from churnlens._gammagamma import (
        GammaGammaModel,
    )
    from churnlens._input_features import (
        INPUT_GROUPS,
        NO_INPUTS,
        InputSpec,
        InputsRequiredError,
        InputTables,
        input_features,
        learn_input_spec,
        with_input_features,
    )
    from churnlens._inputs import (
        CleanCustomers,
        CleanEvents,
        attributes_at,
        events_until,
        load_customers,
        load_events,
    )
    from churnlens._io import write_safe_csv
    from churnlens._ledger import (
        LedgerEntry,
        read_ledger,
    )
    from churnlens._loading import (
        CleaningReport,
        LoadResult,
        load_transactions,
    )
    from churnlens._model import (
        ChurnModel,
        Explanation,
        LogisticBaseline,
        RecencyBaseline,
    )
    from churnlens._model_loader import (
        load_bundle,
        load_model,
    )
    from churnlens._monitoring import (
        MonitorAlert,
        MonitorReport,
        load_and_monitor,
        monitor,
        write_monitor_report,
    )
    from churnlens._paretonbd import (
        ParetoNBDModel,
    )
    from churnlens._pipeline import (
        TrainingRun,
        train,
    )
    from churnlens._retention import (
        RetentionRates,
        cohort_table,
        retention_rates,
        retention_series,
    )
    from churnlens._rules import (
        ProfitTerms,
        at_risk_list,
        expected_profit,
        expected_value,
        heuristic_expected_value,
        profit_terms,
        rfm_segment,
        risk_band,
    )
    from churnlens._scoring import (
        ScoreResult,
        score_customers,
    )
    from churnlens._synthetic import (
        SyntheticInputs,
        generate_inputs,
        generate_transactions,
        write_transactions,
    )
    from churnlens._training import (
        BacktestResult,
        backtest,
        fit_models,
        snapshot_cutoffs,
    )
    from churnlens._value import (
        ValueModel,
        fit_value_model,
        predict_value,
    )
    from churnlens._version import (
        __version__,
    )
    from churnlens.exceptions import (
        ChurnlensError,
        ConfigError,
        DatasetNotAvailableError,
        DataValidationError,
        EmptyDataError,
        MissingColumnError,
        ModelError,
        NotFittedError,
    )

# Public name -> private module. Imported on first use (PEP 562), so ``import
# churnlens`` and the CLI start fast and nothing heavy loads until it is needed.
_LAZY: dict[str, str] = {
    "calibration_table": "churnlens._evaluation",
    "lift_table": "churnlens._evaluation",
    "write_safe_csv": "churnlens._io",
    "BGNBDModel": "churnlens._bgnbd",
    "BGNBDParams": "churnlens._bgnbd",
    "BacktestResult": "churnlens._training",
    "ChurnModel": "churnlens._model",
    "Explanation": "churnlens._model",
    "ChurnlensError": "churnlens.exceptions",
    "CleaningReport": "churnlens._loading",
    "ConfigError": "churnlens.exceptions",
    "DataValidationError": "churnlens.exceptions",
    "DatasetNotAvailableError": "churnlens.exceptions",
    "EmptyDataError": "churnlens.exceptions",
    "FEATURES": "churnlens._features",
    "Feature": "churnlens._features",
    "LoadResult": "churnlens._loading",
    "LogisticBaseline": "churnlens._model",
    "MissingColumnError": "churnlens.exceptions",
    "ModelArtifact": "churnlens._artifact",
    "ModelError": "churnlens.exceptions",
    "NotFittedError": "churnlens.exceptions",
    "PredictedRetention": "churnlens._evaluation",
    "RecencyBaseline": "churnlens._model",
    "RetentionRates": "churnlens._retention",
    "ScoreResult": "churnlens._scoring",
    "Settings": "churnlens._config",
    "TrainingRun": "churnlens._pipeline",
    "at_risk_list": "churnlens._rules",
    "backtest": "churnlens._training",
    "bgnbd_expected_purchases": "churnlens._bgnbd",
    "bgnbd_fit": "churnlens._bgnbd",
    "bgnbd_log_likelihood": "churnlens._bgnbd",
    "bgnbd_p_alive": "churnlens._bgnbd",
    "bgnbd_prob_purchase_in": "churnlens._bgnbd",
    "build_snapshots": "churnlens._features",
    "classification_metrics": "churnlens._evaluation",
    "cohort_table": "churnlens._retention",
    "compute_features": "churnlens._features",
    "compute_labels": "churnlens._features",
    "expected_value": "churnlens._rules",
    "feature_names": "churnlens._features",
    "feature_table_markdown": "churnlens._features",
    "fit_models": "churnlens._training",
    "generate_transactions": "churnlens._synthetic",
    "write_transactions": "churnlens._synthetic",
    "load_bundle": "churnlens._model_loader",
    "load_config": "churnlens._config",
    "load_model": "churnlens._model_loader",
    "load_transactions": "churnlens._loading",
    "predict_retention": "churnlens._evaluation",
    "retention_rates": "churnlens._retention",
    "retention_series": "churnlens._retention",
    "rfm_segment": "churnlens._rules",
    "risk_band": "churnlens._rules",
    "save_bundle": "churnlens._artifact",
    "score_customers": "churnlens._scoring",
    "snapshot_cutoffs": "churnlens._training",
    "train": "churnlens._pipeline",
    "GammaGammaModel": "churnlens._gammagamma",
    "ParetoNBDModel": "churnlens._paretonbd",
    "CampaignResult": "churnlens._campaign",
    "analyse_campaign": "churnlens._campaign",
    "assign_control_group": "churnlens._campaign",
    "read_campaign_list": "churnlens._campaign",
    "LedgerEntry": "churnlens._ledger",
    "read_ledger": "churnlens._ledger",
    "MonitorAlert": "churnlens._monitoring",
    "MonitorReport": "churnlens._monitoring",
    "load_and_monitor": "churnlens._monitoring",
    "monitor": "churnlens._monitoring",
    "write_monitor_report": "churnlens._monitoring",
    "CleanCustomers": "churnlens._inputs",
    "CleanEvents": "churnlens._inputs",
    "attributes_at": "churnlens._inputs",
    "events_until": "churnlens._inputs",
    "load_customers": "churnlens._inputs",
    "load_events": "churnlens._inputs",
    "INPUT_GROUPS": "churnlens._input_features",
    "NO_INPUTS": "churnlens._input_features",
    "InputSpec": "churnlens._input_features",
    "InputTables": "churnlens._input_features",
    "InputsRequiredError": "churnlens._input_features",
    "input_features": "churnlens._input_features",
    "learn_input_spec": "churnlens._input_features",
    "with_input_features": "churnlens._input_features",
    "SyntheticInputs": "churnlens._synthetic",
    "generate_inputs": "churnlens._synthetic",
    "ValueModel": "churnlens._value",
    "fit_value_model": "churnlens._value",
    "predict_value": "churnlens._value",
    "ProfitTerms": "churnlens._rules",
    "expected_profit": "churnlens._rules",
    "heuristic_expected_value": "churnlens._rules",
    "profit_terms": "churnlens._rules",
}

from churnlens._version import __version__  # noqa: E402  (tiny, always loaded)

__all__ = [
    "FEATURES",
    "INPUT_GROUPS",
    "NO_INPUTS",
    "BGNBDModel",
    "BGNBDParams",
    "BacktestResult",
    "CampaignResult",
    "ChurnModel",
    "ChurnlensError",
    "CleanCustomers",
    "CleanEvents",
    "CleaningReport",
    "ConfigError",
    "DataValidationError",
    "DatasetNotAvailableError",
    "EmptyDataError",
    "Explanation",
    "Feature",
    "GammaGammaModel",
    "InputSpec",
    "InputTables",
    "InputsRequiredError",
    "LedgerEntry",
    "LoadResult",
    "LogisticBaseline",
    "MissingColumnError",
    "ModelArtifact",
    "ModelError",
    "MonitorAlert",
    "MonitorReport",
    "NotFittedError",
    "ParetoNBDModel",
    "PredictedRetention",
    "ProfitTerms",
    "RecencyBaseline",
    "RetentionRates",
    "ScoreResult",
    "Settings",
    "SyntheticInputs",
    "TrainingRun",
    "ValueModel",
    "__version__",
    "analyse_campaign",
    "assign_control_group",
    "at_risk_list",
    "attributes_at",
    "backtest",
    "bgnbd_expected_purchases",
    "bgnbd_fit",
    "bgnbd_log_likelihood",
    "bgnbd_p_alive",
    "bgnbd_prob_purchase_in",
    "build_snapshots",
    "calibration_table",
    "classification_metrics",
    "cohort_table",
    "compute_features",
    "compute_labels",
    "events_until",
    "expected_profit",
    "expected_value",
    "feature_names",
    "feature_table_markdown",
    "fit_models",
    "fit_value_model",
    "generate_inputs",
    "generate_transactions",
    "heuristic_expected_value",
    "input_features",
    "learn_input_spec",
    "lift_table",
    "load_and_monitor",
    "load_bundle",
    "load_config",
    "load_customers",
    "load_events",
    "load_model",
    "load_transactions",
    "monitor",
    "predict_retention",
    "predict_value",
    "profit_terms",
    "read_campaign_list",
    "read_ledger",
    "retention_rates",
    "retention_series",
    "rfm_segment",
    "risk_band",
    "save_bundle",
    "score_customers",
    "snapshot_cutoffs",
    "train",
    "with_input_features",
    "write_monitor_report",
    "write_safe_csv",
    "write_transactions",
]


# Public submodules, also reachable as attributes after a plain ``import churnlens``.
_SUBMODULES = ("cli", "datasets", "exceptions", "plots")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"churnlens.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'churnlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
