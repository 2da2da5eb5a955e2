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


def test_model_settings_build_the_model_with_every_parameter() -> None:
    import inspect

    from churnlens import ChurnModel

    settings = load_config(overrides={"horizon_days": 30, "model.n_estimators": 7,
                                      "snapshots.validation_count": 2, "snapshots.count": 4})
    model = settings.build_model()
    assert isinstance(model, ChurnModel) and model.get_params()["feature_names"] is None
    expected = {**settings.model.model_dump(), "horizon_days": 30, "validation_cutoffs": 2}
    assert {k: model.get_params()[k] for k in expected} == expected
    # every parameter of the model is a setting (or the two given by the settings object)
    parameters = set(inspect.signature(ChurnModel.__init__).parameters) - {"self"}
    assert parameters == set(expected) | {"feature_names"}


def test_model_defaults_are_the_models_own() -> None:
    import inspect

    from churnlens import ChurnModel

    defaults = {name: p.default for name, p in
                inspect.signature(ChurnModel.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    settings = Settings()
    assert settings.model.model_dump() == {k: defaults[k] for k in settings.model.model_dump()}
    assert settings.horizon_days == defaults["horizon_days"]
    assert settings.snapshots.validation_count == defaults["validation_cutoffs"]


def test_reading_settings_does_not_import_the_model() -> None:
    import subprocess
    import sys

    code = ("import sys, churnlens._config as c; c.load_config(); "
            "print('sklearn' in sys.modules, 'churnlens._model' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


# --- strict files (issue 22): encoding, repeated keys, types -----------------------------


@pytest.mark.parametrize(("body", "fragments"), [
    (b"horizon_days: 30\nhorizon_days: 60\n", ["'horizon_days' appears twice", "lines 1 and 2"]),
    (b"model:\n  n_jobs: 1\n  n_jobs: 2\n", ["'n_jobs' appears twice", "lines 2 and 3"]),
    ("horizon_days: 30 # é\n".encode("latin-1"), ["not UTF-8"]),
    (b"horizon_days: true\n", ["horizon_days", "valid integer", "True"]),
    (b'horizon_days: "12"\n', ["horizon_days", "'12'"]),
    (b'scoring:\n  high_risk: "0.8"\n', ["scoring.high_risk", "'0.8'"]),
    (b"mlflow:\n  enabled: 1\n", ["mlflow.enabled", "valid boolean"]),
    (b"features:\n  windows_days: [30, false]\n", ["features.windows_days"]),
    (b"horizon_days: [unclosed\n", ["not valid YAML"]),
])
def test_config_files_are_read_strictly(tmp_path, body, fragments) -> None:
    path = tmp_path / "settings.yaml"
    path.write_bytes(body)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message and "Suggestion:" in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_yaml_lists_and_whole_floats_stay_accepted(tmp_path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("features:\n  windows_days: [90, 30]\nmodel:\n  learning_rate: 1\n"
                    "data:\n  delimiter: ';'\n")
    settings = load_config(path)
    assert settings.features.windows_days == (30, 90)
    assert settings.model.learning_rate == 1.0
    assert settings.data.loader_options()["delimiter"] == ";"


def test_a_bad_override_is_blamed_on_its_option_not_the_file(tmp_path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("horizon_days: 30\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"horizon_days": 0}, option_names={"horizon_days": "--horizon-days"})
    message = str(caught.value)
    assert "the options given (--horizon-days)" in message
    assert "--horizon-days: Input should be greater than or equal to 1" in message
    assert str(path) not in message and "defaults" not in message
    with pytest.raises(ConfigError, match="invalid configuration in the options given"):
        load_config(overrides={"horizon_days": 0})
