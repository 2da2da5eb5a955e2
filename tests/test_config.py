"""Settings: the packaged defaults, the YAML file, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnlens._config import Settings, load_config
from churnlens.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_equals_builtin_defaults() -> None:
    assert load_config(ROOT / "configs" / "default.yaml") == Settings()


def test_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("horizon_days: 30\nmodel:\n  learning_rate: 0.1\n")
    s = load_config(file, {"model.learning_rate": 0.2, "horizon_days": None})
    assert s.horizon_days == 30 and s.model.learning_rate == 0.2
    assert s.with_overrides({"mlflow.enabled": False}).mlflow.enabled is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("horizon_dayz: 30\n", "unknown key 'horizon_dayz'"),
        ("model:\n  calibration: magic\n", "model.calibration"),
        ("horizon_days: -1\n", "horizon_days"),
        ("snapshots:\n  every: fortnight\n", "every must be one of"),
        ("snapshots:\n  count: 3\n  validation_count: 3\n", "validation_count must be smaller"),
        ("scoring:\n  high_risk: 0.3\n  medium_risk: 0.5\n", "medium_risk must be below"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("horizon_days: [1,\n", "not valid YAML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(file)
    assert isinstance(info.value, ValueError)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("/nonexistent/churnlens.yaml")


def test_windows_are_sorted_and_deduplicated() -> None:
    assert load_config(overrides={"features.windows_days": [90, 30, 30]}
                       ).features.windows_days == (30, 90)


def test_data_settings_are_load_transactions_options() -> None:
    import inspect

    from churnlens import load_transactions

    parameters = inspect.signature(load_transactions).parameters
    assert set(Settings().data.loader_options()) <= set(parameters)
