"""The one door to a trained model: every path that loads a model comes through here.

``churnlens score`` (DuckDB and Spark), ``churnlens serve`` and ``/reload``,
``churnlens export``, promotion of a new champion and the public
:func:`churnlens.load_model` all call :func:`load_model`, so a model one of them
refuses is refused by all of them, with the same message. The rules it owns:

- **digest**: a bundle's model file must match the SHA-256 in its card before it is
  unpickled (loading a pickle runs code). This is the one trust point; everything
  else is checked on the unpickled model.
- **fitted**: the file holds a fitted churnlens model that knows its features.
- **horizon**: the model was fitted for the horizon its metadata claims, and for the
  ``horizon_days`` a caller asks for.
- **features**: churnlens computes every feature the model needs with the model's
  windows, and the card (bundle) and the MLflow signature (registry) list exactly the
  features the model uses, in its order.
- **card**: the card's horizon, windows and as-of date are the model's own.

Layers: this module calls :mod:`churnlens._registry` (which version a registry URI
names, and its files) and :mod:`churnlens._artifact` (the bundle format); neither
calls back. :mod:`churnlens._tracking` (logging, registering, promotion) calls this
module to load the champion it compares a new model with.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from churnlens._artifact import ModelArtifact, read_bundle
from churnlens.exceptions import ChurnlensError, ModelError

__all__ = ["check_model", "load_bundle", "load_model"]

REGISTRY_PREFIXES = ("models:/", "runs:/")


def load_model(
    uri_or_path: str | os.PathLike[str],
    mlflow_settings: Any = None,
    *,
    horizon_days: int | None = None,
    full: bool = False,
) -> ModelArtifact:
    """Load a churnlens model from the MLflow registry or a bundle, with every check.

    Parameters
    ----------
    uri_or_path
        ``models:/churnlens@champion``, ``models:/churnlens/3`` or ``runs:/ID/model``
        (read from the registry), or a bundle folder or its ``churnlens-model.json``
        card (see ``models/README.md``).
    mlflow_settings
        :class:`~churnlens._config.MlflowSettings` (``tracking_uri``; default
        ``sqlite:///mlflow.db``); unused for bundles.
    horizon_days
        Refuse a model trained for another horizon (``None``: any horizon).
    full
        ``False`` (to score): the bundle's scoring form when it has one
        (:class:`~churnlens._scorer.ChurnScorer`: same scores, loaded without pickle,
        scikit-learn or LightGBM; ``artifact.full_model()`` gives the estimator later).
        ``True``: the fitted :class:`~churnlens.ChurnModel` from the bundle's pickle.

    Returns
    -------
    ModelArtifact
        The model, with ``name``, ``version``, ``alias`` and ``run_id`` set when it came
        from the registry.

    Raises
    ------
    ModelError
        The model is missing or unreadable, its digest does not match its card (it is
        never unpickled then), or it disagrees with its card or signature (features,
        horizon, windows, as-of date), or with ``horizon_days``.

    Examples
    --------
    >>> import churnlens
    >>> artifact = churnlens.load_model("models/")  # doctest: +SKIP
    >>> artifact.horizon_days  # doctest: +SKIP
    91
    """
    text = str(uri_or_path)
    try:
        if text.startswith(REGISTRY_PREFIXES):
            from churnlens._registry import fetch_registered

            with tempfile.TemporaryDirectory(prefix="churnlens-model-") as tmp:
                found = fetch_registered(text, mlflow_settings, Path(tmp))
                artifact, card = read_bundle(found.bundle, scorer=not full)
            artifact.name, artifact.version = found.name, found.version
            artifact.alias, artifact.run_id = found.alias, found.run_id
            signature = found.signature_inputs
        else:
            artifact, card = read_bundle(text, scorer=not full)
            signature = None
    except OSError as exc:
        raise ModelError(f"{text}: cannot read the model ({exc.strerror or exc}). "
                         "Suggestion: check the path and its permissions.") from exc
    check_model(artifact, source=text, card=card, signature_inputs=signature,
                horizon_days=horizon_days)
    return artifact


def load_bundle(path: str | os.PathLike[str], *, horizon_days: int | None = None,
                full: bool = False) -> ModelArtifact:
    """Load an exported bundle (folder or card) with every check of :func:`load_model`.

    Parameters
    ----------
    path
        The bundle folder, or its ``churnlens-model.json`` card.
    horizon_days
        Refuse a model trained for another horizon (``None``: any horizon).
    full
        As in :func:`load_model`.

    Returns
    -------
    ModelArtifact
        The model, after its digest and its card were checked.

    Raises
    ------
    ModelError
        ``path`` is a registry URI (use :func:`load_model`), or any refusal of
        :func:`load_model`.
    """
    if str(path).startswith(REGISTRY_PREFIXES):
        raise ModelError(f"{path} is a registry URI, not a bundle folder. Suggestion: use "
                         "churnlens.load_model for registry URIs.")
    return load_model(path, horizon_days=horizon_days, full=full)


def check_model(
    artifact: ModelArtifact,
    *,
    source: str = "the model",
    card: dict[str, Any] | None = None,
    signature_inputs: list[str] | None = None,
    horizon_days: int | None = None,
) -> None:
    """Refuse a model that cannot score churnlens features consistently.

    Parameters
    ----------
    artifact
        The unpickled model and its metadata.
    source
        Where it came from, for the messages.
    card
        Its bundle's model card: its ``features``, ``horizon_days``, ``windows_days``
        and ``as_of`` must be the model's own.
    signature_inputs
        The input columns of its MLflow signature: must be the model's features.
    horizon_days
        The horizon the caller asks for (``None``: any).

    Raises
    ------
    ModelError
        The model is not fitted, was fitted for another horizon than its metadata or
        ``horizon_days`` says, needs features churnlens does not compute, or its card
        or signature disagrees with it.
    """
    from churnlens._features_sql import feature_names  # light: no pandas, no DuckDB

    model = artifact.model
    fitted = getattr(model, "base_feature_names_", None)
    if fitted is None or not hasattr(model, "predict_proba"):
        raise ModelError(f"{source} does not hold a fitted churnlens model "
                         f"({type(model).__name__}). Suggestion: train one with churnlens "
                         "train.")
    own = getattr(model, "horizon_days_", artifact.horizon_days)
    if int(own) != int(artifact.horizon_days):
        raise ModelError(f"{source}: the model was fitted for a {own}-day horizon but its "
                         f"metadata says {artifact.horizon_days} days; it is refused. "
                         "Suggestion: export the bundle again from the registry.")
    if horizon_days is not None and int(horizon_days) != int(artifact.horizon_days):
        raise ModelError(f"{source} predicts churn over {artifact.horizon_days} days, not "
                         f"{horizon_days}. Suggestion: score with a model trained for "
                         f"{horizon_days} days, or drop --horizon-days.")
    try:
        computable = set(feature_names(artifact.windows_days))
    except ChurnlensError as exc:
        raise ModelError(f"{source}: unusable feature windows {artifact.windows_days} "
                         f"({exc}).") from exc
    if getattr(model, "input_spec_", None):  # trained with richer inputs (issue 21)
        from churnlens._input_features import spec_of

        computable |= set(spec_of(model).feature_names())
    unknown = [n for n in artifact.feature_names if n not in computable]
    if unknown:
        raise ModelError(f"{source} needs features churnlens does not compute: {unknown[:8]}. "
                         "Suggestion: use a model trained by this churnlens version.")
    if card is not None:
        for key, value in (("horizon_days", artifact.horizon_days),
                           ("windows_days", list(artifact.windows_days)),
                           ("as_of", str(artifact.as_of))):
            if key in card and card[key] != value:
                raise ModelError(f"{source}: its model card says {key} = {card[key]!r} but the "
                                 f"model has {value!r}; the bundle is inconsistent and is "
                                 "refused. Suggestion: export the bundle again.")
        _same_features(source, "its model card", card.get("features"), artifact.feature_names)
    _same_features(source, "its MLflow signature", signature_inputs, artifact.feature_names)


def _same_features(source: str, where: str, listed: Any, used: list[str]) -> None:
    if listed is None or list(listed) == list(used):
        return
    listed = list(listed)
    extra = [n for n in listed if n not in used]
    lacking = [n for n in used if n not in listed]
    raise ModelError(f"{source}: {where} lists other features than the model uses "
                     f"(listed only: {extra[:5]}, used only: {lacking[:5]}); the model is "
                     "refused. Suggestion: export or register the model again.")
