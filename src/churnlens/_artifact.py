"""The trained-model artifact and its bundle format (joblib + JSON model card).

One format everywhere: the MLflow pyfunc carries a bundle as an artifact, and
``churnlens export`` writes the same bundle to ``models/`` for places without MLflow.
Loading a pickle runs code, so a bundle whose SHA-256 digest does not match its card
is refused before it is unpickled (:func:`read_bundle`, the one trust point).

Beside the pickle, a bundle carries the model's scoring form
(``churnlens-scorer.npz``, :class:`churnlens._scorer.ChurnScorer`): arrays only, read
with ``allow_pickle=False`` and NumPy alone, its own SHA-256 in the card. A caller that
only scores reads that (``read_bundle(..., scorer=True)``: ~0.1 s instead of the
libraries the pickle imports); the estimator stays one call away
(:meth:`ModelArtifact.full_model`). Bundles written before the scorer existed are read
from their pickle as before.

This module is the format only; it imports no other model module. A model to use is
loaded by :func:`churnlens._model_loader.load_model`, which also checks the model
against its card.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from churnlens._version import __version__
from churnlens.exceptions import ModelError

if TYPE_CHECKING:  # pandas and the writers are imported where used: reading a
    import pandas as pd  # scorer bundle must not import pandas

__all__ = ["BUNDLE_CARD", "BUNDLE_MODEL", "BUNDLE_SCORER", "ModelArtifact", "inputs_summary",
           "read_bundle", "save_bundle"]

BUNDLE_MODEL = "churnlens-model.joblib"
BUNDLE_CARD = "churnlens-model.json"
BUNDLE_SCORER = "churnlens-scorer.npz"
FORMAT_VERSION = 1


@dataclasses.dataclass
class ModelArtifact:
    """A trained churnlens model with everything needed to use and judge it.

    Attributes
    ----------
    model
        The fitted :class:`~churnlens.ChurnModel`, or its scoring form
        (:class:`~churnlens._scorer.ChurnScorer`, same scores) when read for scoring;
        :meth:`full_model` gives the estimator in both cases.
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

    def full_model(self) -> Any:
        """The fitted estimator (:class:`~churnlens.ChurnModel`), also when :attr:`model`
        is its scoring form: then the bundle's pickle, checked against the card's digest
        when the bundle was read, is unpickled now (imports scikit-learn and LightGBM).

        Raises
        ------
        ModelError
            The scoring form does not know its pickle (it was itself unpickled, e.g. on
            a Spark executor), or the pickle does not hold a churnlens model.
        """
        if not hasattr(self.model, "source_class_"):
            return self.model
        pickled = getattr(self.model, "_pickled", None)
        if pickled is None:
            raise ModelError("this model was loaded in scoring form without its pickle. "
                             "Suggestion: load it again with load_model(..., full=True).")
        import joblib

        try:
            full = joblib.load(io.BytesIO(pickled))
        except Exception as exc:  # unpickling can fail in many ways; all mean "unusable"
            raise ModelError(f"the bundle's model file cannot be loaded "
                             f"({type(exc).__name__}: {exc}).") from exc
        if not isinstance(full, ModelArtifact):
            raise ModelError("the bundle's model file does not hold a churnlens model.")
        return full.model

    def card(self) -> dict[str, Any]:
        """JSON model card: what the model is, how it was trained and how good it is."""
        from churnlens._io import json_ready
        from churnlens._scorer import SELF_KNOWLEDGE

        return {
            "format_version": FORMAT_VERSION,
            "churnlens_version": self.churnlens_version,
            "model_class": getattr(self.model, "source_class_", type(self.model).__name__),
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
            # What the model knows about itself: the blend it chose, the inputs its
            # linear part does not use and why, its measured level error, its history,
            # BG/NBD's boundary flags and the warnings built from them.
            "self_assessment": json_ready({
                key.rstrip("_"): getattr(self.model, key) for key in SELF_KNOWLEDGE
                if hasattr(self.model, key)}),
            # The richer inputs it was trained with (groups, features, dropped ones) and
            # its spec, which scoring applies unchanged (meta "input_spec" of the scorer).
            "inputs": inputs_summary(self.model),
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inputs_summary(model: Any) -> dict[str, Any]:
    """Which richer inputs a model uses (model card, train ``--json``, ``inputs.json``).

    Returns
    -------
    dict
        ``groups``, ``features`` (by group), ``categorical`` (the categorical
        features), ``dropped`` (input features the logistic part does not use, and why)
        and ``spec`` (:meth:`~churnlens._input_features.InputSpec.to_dict`, what scoring
        applies); ``groups`` empty for a model trained without (or before) richer inputs.
    """
    spec_data = getattr(model, "input_spec_", None)
    if spec_data is None:  # nothing to import for a model without inputs
        return {"groups": [], "features": {}, "categorical": [], "dropped": [], "spec": None}
    from churnlens._input_features import spec_of

    spec = spec_of(model)
    names = set(spec.feature_names())
    return {"groups": list(spec.groups),
            "features": {g: spec.features_of(g) for g in spec.groups},
            "categorical": spec.categorical_features(),
            "dropped": [dict(d) for d in getattr(model, "dropped_inputs_", [])
                        if d.get("feature") in names],
            "spec": spec.to_dict()}


def save_bundle(artifact: ModelArtifact, directory: str | os.PathLike[str]) -> Path:
    """Write a bundle: the pickle, the scorer and the card ``churnlens-model.json``.

    The files are ``churnlens-model.joblib`` (the pickled :class:`ModelArtifact`),
    ``churnlens-scorer.npz`` (its scoring form) and the card.

    Parameters
    ----------
    artifact
        The trained model and its metadata (its model in either form: the estimator is
        pickled, its scoring form saved beside it).
    directory
        Folder for the files (created if missing).

    Returns
    -------
    pathlib.Path
        The card's path. The files are written atomically; the card, which holds the
        SHA-256 of the other two, is written last. A model without a scoring form
        (``to_scorer`` missing or refusing) gets no scorer file and is read from its
        pickle.
    """
    import joblib

    from churnlens._io import atomic_path, write_json

    if hasattr(artifact.model, "source_class_"):  # the scoring form: pickle the estimator
        artifact = dataclasses.replace(artifact, model=artifact.full_model())
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / BUNDLE_MODEL
    with atomic_path(target) as tmp:
        joblib.dump(artifact, tmp, compress=3)
    scorer = _scorer_of(artifact)
    stale = folder / BUNDLE_SCORER
    if scorer is None:
        stale.unlink(missing_ok=True)
    else:
        with atomic_path(stale) as tmp:
            scorer.save(tmp)
    card = artifact.card()
    card["sha256"] = _sha256(target)
    card["model_file"] = BUNDLE_MODEL
    if scorer is not None:
        card["scorer_file"] = BUNDLE_SCORER
        card["scorer_sha256"] = _sha256(stale)
    card["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return write_json(card, folder / BUNDLE_CARD)


def _scorer_of(artifact: ModelArtifact) -> Any:
    """The model's scoring form with the artifact's metadata, or None if it has none."""
    to_scorer = getattr(artifact.model, "to_scorer", None)
    if to_scorer is None:
        return None
    try:
        scorer = to_scorer()
    except ModelError:
        return None
    scorer.artifact = {"horizon_days": artifact.horizon_days, "as_of": str(artifact.as_of),
                       "windows_days": list(artifact.windows_days),
                       "churnlens_version": artifact.churnlens_version}
    scorer._meta["artifact"] = scorer.artifact
    return scorer


def read_bundle(path: str | os.PathLike[str], *, scorer: bool = False
                ) -> tuple[ModelArtifact, dict[str, Any]]:
    """Read a bundle and its card, refusing a mismatched digest before unpickling.

    This reads the format only. Every caller that wants a model to use goes through
    :func:`churnlens._model_loader.load_model`, which also checks the model against
    its card (features, horizon, windows, fitted-ness).

    Parameters
    ----------
    path
        The bundle folder, or its ``churnlens-model.json`` card.
    scorer
        Read the model's scoring form (``churnlens-scorer.npz``: no pickle, NumPy
        only) when the bundle has one; the pickle's digest is still checked, and its
        bytes are kept for :meth:`ModelArtifact.full_model`. ``False``, or a bundle
        without a scorer: unpickle the model.

    Returns
    -------
    tuple of (ModelArtifact, dict)
        The model, after its files' SHA-256 matched the card, and the card itself.
        With a scorer, the metrics, backtest and settings are the card's.

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
        raise ModelError(f"{card_path}: not a churnlens model bundle (its card is not JSON: "
                         f"{type(exc).__name__}). Suggestion: pass a bundle folder written by "
                         "churnlens export or churnlens train --bundle, or a models:/ URI."
                         ) from exc
    if not isinstance(card, dict):
        raise ModelError(f"{card_path}: the model card is not a JSON object. Suggestion: "
                         "export the bundle again from the registry.")
    model_file = card_path.parent / str(card.get("model_file", BUNDLE_MODEL))
    if not model_file.is_file():
        raise ModelError(f"{model_file}: the model file named by the card is missing.")
    pickled = _trusted_bytes(model_file, card.get("sha256"), "loading a pickle runs code")
    if card.get("scorer_file"):  # checked on every read: all readers refuse alike
        read = _read_scorer(card_path, card, pickled)
        if scorer:
            return read, card
    import joblib  # only once the digest is trusted

    try:
        artifact = joblib.load(io.BytesIO(pickled))  # the bytes whose digest matched
    except Exception as exc:  # unpickling can fail in many ways; all mean "unusable"
        raise ModelError(f"{model_file}: cannot be loaded ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(artifact, ModelArtifact):
        raise ModelError(f"{model_file}: does not hold a churnlens model.")
    return artifact, card


def _trusted_bytes(file: Path, expected: Any, why: str) -> bytes:
    """The file's bytes, refused unless their SHA-256 is the card's ``expected``."""
    data = file.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if not expected or actual != expected:
        raise ModelError(
            f"{file}: SHA-256 {actual} does not match the card ({expected}); the file "
            f"was changed or corrupted and is refused ({why}). "
            "Suggestion: export the bundle again from the registry."
        )
    return data


def _read_scorer(card_path: Path, card: dict[str, Any], pickled: bytes) -> ModelArtifact:
    """The artifact of a bundle's scoring form (card checked by the caller)."""
    from churnlens._scorer import load_scorer

    scorer_file = card_path.parent / str(card["scorer_file"])
    if not scorer_file.is_file():
        raise ModelError(f"{scorer_file}: the scorer file named by the card is missing. "
                         "Suggestion: export the bundle again from the registry.")
    data = _trusted_bytes(scorer_file, card.get("scorer_sha256"), "only files the card "
                          "describes are read")
    scorer = load_scorer(data, source=str(scorer_file))
    scorer._pickled = pickled
    meta = scorer.artifact
    try:
        artifact = ModelArtifact(
            model=scorer, horizon_days=int(meta["horizon_days"]),
            as_of=dt.date.fromisoformat(str(meta["as_of"])),
            windows_days=tuple(int(w) for w in meta["windows_days"]),
            metrics=card.get("metrics") or {}, backtest=card.get("backtest"),
            settings=card.get("settings") or {},
            churnlens_version=str(meta["churnlens_version"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{scorer_file}: the scorer lacks the model's metadata ({exc}). "
                         "Suggestion: export the bundle again.") from exc
    return artifact
