"""The trained-model artifact and its bundle format (joblib + JSON model card).

One format everywhere: the MLflow pyfunc carries a bundle as an artifact, and
``churnlens export`` writes the same bundle to ``models/`` for places without MLflow.
Loading a pickle runs code, so a bundle whose SHA-256 digest does not match its card
is refused before it is unpickled (:func:`read_bundle`, the one trust point).

This module is the format only; it imports no other model module. A model to use is
loaded by :func:`churnlens._model_loader.load_model`, which also checks the model
against its card.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlens._io import atomic_path, json_ready, write_json
from churnlens._version import __version__
from churnlens.exceptions import ModelError

__all__ = ["BUNDLE_CARD", "BUNDLE_MODEL", "ModelArtifact", "read_bundle", "save_bundle"]

BUNDLE_MODEL = "churnlens-model.joblib"
BUNDLE_CARD = "churnlens-model.json"
FORMAT_VERSION = 1


@dataclasses.dataclass
class ModelArtifact:
    """A trained churnlens model with everything needed to use and judge it.

    Attributes
    ----------
    model
        The fitted :class:`~churnlens.ChurnModel`.
    horizon_days, as_of
        The churn horizon and the training as-of date.
    windows_days
        Feature windows the model was trained with (scoring recomputes features with
        the same windows).
    metrics
        Held-out validation metrics of the model and its baselines.
    backtest
        The training run's backtest document (``BacktestResult.to_dict()``), if any.
    settings
        The full configuration used, as a dictionary.
    churnlens_version
        The churnlens version that trained the model.
    name, version, alias, run_id
        Registry coordinates when loaded from MLflow (not stored in the bundle).
    """

    model: Any
    horizon_days: int
    as_of: dt.date
    windows_days: tuple[int, ...]
    metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    backtest: dict[str, Any] | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    churnlens_version: str = __version__
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None

    @property
    def feature_names(self) -> list[str]:
        """Input features the model needs (computed by ``compute_features``)."""
        return list(self.model.base_feature_names_)

    def churn_risk(self, features: pd.DataFrame) -> np.ndarray:
        """Churn risk for each row of a features frame."""
        missing = [c for c in self.feature_names if c not in features.columns]
        if missing:
            raise ModelError(
                f"the model needs features {missing[:8]} that the input lacks. Suggestion: "
                f"compute features with windows {list(self.windows_days)} (the model's)."
            )
        return np.asarray(self.model.predict_proba(features)[:, 1], dtype=np.float64)

    def card(self) -> dict[str, Any]:
        """JSON model card: what the model is, how it was trained and how good it is."""
        return {
            "format_version": FORMAT_VERSION,
            "churnlens_version": self.churnlens_version,
            "model_class": type(self.model).__name__,
            "horizon_days": self.horizon_days,
            "as_of": str(self.as_of),
            "windows_days": list(self.windows_days),
            "features": self.feature_names,
            "metrics": json_ready(self.metrics),
            "backtest": json_ready(self.backtest),
            "settings": json_ready(self.settings),
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(artifact: ModelArtifact, directory: str | os.PathLike[str]) -> Path:
    """Write ``churnlens-model.joblib`` and its card ``churnlens-model.json``.

    Parameters
    ----------
    artifact
        The trained model and its metadata.
    directory
        Folder for the two files (created if missing).

    Returns
    -------
    pathlib.Path
        The card's path. Both files are written atomically; the card, which holds the
        model file's SHA-256, is written last.
    """
    import joblib

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / BUNDLE_MODEL
    with atomic_path(target) as tmp:
        joblib.dump(artifact, tmp, compress=3)
    card = artifact.card()
    card["sha256"] = _sha256(target)
    card["model_file"] = BUNDLE_MODEL
    card["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return write_json(card, folder / BUNDLE_CARD)


def read_bundle(path: str | os.PathLike[str]) -> tuple[ModelArtifact, dict[str, Any]]:
    """Read a bundle and its card, refusing a mismatched digest before unpickling.

    This reads the format only. Every caller that wants a model to use goes through
    :func:`churnlens._model_loader.load_model`, which also checks the model against
    its card (features, horizon, windows, fitted-ness).

    Parameters
    ----------
    path
        The bundle folder, or its ``churnlens-model.json`` card.

    Returns
    -------
    tuple of (ModelArtifact, dict)
        The model, after its file's SHA-256 matched the card, and the card itself.

    Raises
    ------
    ModelError
        No bundle there, an unreadable card, a missing model file, a digest mismatch
        (the file is never unpickled then) or a file that does not hold a model.
    """
    given = Path(path)
    card_path = given / BUNDLE_CARD if given.is_dir() else given
    if not card_path.is_file():
        raise ModelError(
            f"{given}: no churnlens model bundle here (expected {BUNDLE_CARD}). "
            "Suggestion: export one with churnlens export --model models:/churnlens@champion "
            "--to models/."
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{card_path}: the model card is not valid JSON ({exc}).") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{card_path}: the model card is not a JSON object. Suggestion: "
                         "export the bundle again from the registry.")
    model_file = card_path.parent / str(card.get("model_file", BUNDLE_MODEL))
    if not model_file.is_file():
        raise ModelError(f"{model_file}: the model file named by the card is missing.")
    expected = card.get("sha256")
    actual = _sha256(model_file)
    if not expected or actual != expected:
        raise ModelError(
            f"{model_file}: SHA-256 {actual} does not match the card ({expected}); the file "
            "was changed or corrupted and is refused (loading a pickle runs code). "
            "Suggestion: export the bundle again from the registry."
        )
    import joblib  # only once the digest is trusted

    try:
        artifact = joblib.load(model_file)
    except Exception as exc:  # unpickling can fail in many ways; all mean "unusable"
        raise ModelError(f"{model_file}: cannot be loaded ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(artifact, ModelArtifact):
        raise ModelError(f"{model_file}: does not hold a churnlens model.")
    return artifact, card
