"""Reading the MLflow model registry: which version a URI names, and its bundle.

Only :mod:`churnlens._model_loader` calls this module (the one door to a model), and
it only reads: logging, registering and promoting live in :mod:`churnlens._tracking`.

Speed: importing MLflow takes about 3.5 s, more than the whole load may. So for the
default store, a ``sqlite:///`` file whose artifacts are local files, the version an
alias or number names is read from the registry's own tables (``model_versions``,
``registered_model_aliases``, opened read-only) and the bundle and ``MLmodel`` are read
in place. Anything else (another store, a remote artifact location, a table layout
this code does not know, a ``runs:/`` URI) goes through MLflow's client, which then
downloads only the bundle and the ``MLmodel`` file, not the whole model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from churnlens._redact import redact_uri_credentials
from churnlens.exceptions import ModelError

__all__ = ["RegisteredBundle", "fetch_registered", "sqlite_path"]

BUNDLE_SUBPATH = "artifacts/bundle"  # where log_training_run puts the bundle in the model


@dataclasses.dataclass(frozen=True)
class RegisteredBundle:
    """A registered model's bundle folder on this machine and where it came from.

    Attributes
    ----------
    bundle
        Local folder holding ``churnlens-model.joblib`` and its card.
    name, version, alias, run_id
        Registry coordinates (``None`` where the URI does not give them).
    signature_inputs
        Input column names of the model's MLflow signature (``None``: none recorded).
    """

    bundle: Path
    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    signature_inputs: list[str] | None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (``None`` for other stores)."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]).expanduser().resolve()


def fetch_registered(uri: str, settings: Any, destination: Path) -> RegisteredBundle:
    """Find the model a registry URI names and put its bundle on this machine.

    Parameters
    ----------
    uri
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/model``.
    settings
        :class:`~churnlens._config.MlflowSettings`-like (``tracking_uri``); ``None``
        for the defaults.
    destination
        An empty folder the caller removes afterwards, for downloaded files.

    Returns
    -------
    RegisteredBundle
        The bundle folder (in place for a local store, else under ``destination``),
        not yet read: the caller checks its digest before unpickling.

    Raises
    ------
    ModelError
        No store, no such model or version, or the download failed.
    """
    if settings is None:
        from churnlens._config import MlflowSettings

        settings = MlflowSettings()
    tracking_uri = settings.tracking_uri
    database = sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        # Connecting would create an empty store there: a stray file for a typo.
        raise ModelError(
            f"no MLflow store at {database} (from {redact_uri_credentials(tracking_uri)}), "
            f"so no model {uri}. "
            "Suggestion: train one with churnlens train, or point --tracking-uri at the "
            "store the model was registered in."
        )
    if database is not None and uri.startswith("models:/"):
        found = _from_sqlite(uri, database, tracking_uri)
        if found is not None:
            return found
    return _from_mlflow(uri, tracking_uri, destination)


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    ref = uri[len("models:/"):]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, alias, None
    name, _, version = ref.partition("/")
    return name, None, version


def _not_registered(uri: str, tracking_uri: str) -> ModelError:
    return ModelError(
        f"no model {uri} in the registry at {redact_uri_credentials(tracking_uri)}. "
        "Suggestion: train one with "
        "churnlens train (or point --tracking-uri at the right store)."
    )


def _runs_list(tracking_uri: str) -> str:
    """Where to see the runs of a store, for a suggestion (credentials masked)."""
    store = redact_uri_credentials(tracking_uri)
    if urllib.parse.urlparse(tracking_uri).scheme.lower() in ("http", "https"):
        return f"open the MLflow UI at {store}"
    return f"mlflow ui --backend-store-uri {store}"


def _no_run(uri: str, run_id: str | None, tracking_uri: str) -> ModelError:
    return ModelError(
        f"no run {run_id or '(none given)'} in the tracking store at "
        f"{redact_uri_credentials(tracking_uri)}, so no model {uri}. Suggestion: check the "
        f"run id (churnlens train prints it; to list the runs: {_runs_list(tracking_uri)}), "
        "or point --tracking-uri at the store the run was logged in; a registered model "
        "needs no run id: --model models:/NAME@ALIAS."
    )


# The reachability probe's wait: MLflow's own requests retry a refused connection 7
# times with backoff, about 4 minutes before any message.
_PROBE_SECONDS = 10.0


def _connection_failure(tracking_uri: str) -> str | None:
    """Why one plain request to the server at ``tracking_uri`` got no answer (refused,
    unknown host, no answer in time); ``None`` when anything answered, even an error
    page or a refusal. No retries, no process-wide setting touched; the proxy settings of
    the environment apply, as they do to MLflow's requests."""
    import requests

    try:
        requests.head(tracking_uri, timeout=_PROBE_SECONDS, allow_redirects=False)
    except requests.exceptions.ConnectTimeout:
        return f"no answer within {_PROBE_SECONDS:g} seconds"
    except requests.exceptions.SSLError:
        return None  # it answered: a certificate problem, MLflow's message says which
    except requests.exceptions.ConnectionError as exc:
        found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
        return found.group(1).strip() if found else "the connection failed"
    except requests.exceptions.RequestException:
        return None  # an answer that requests did not like: the server is there
    return None


def _require_reachable(uri: str, tracking_uri: str) -> None:
    """Refuse at once a tracking server that cannot be reached (http and https stores):
    otherwise MLflow retries for minutes and the failure reads as "no model in the
    registry". Any answer means the server is there: the calls that follow say the rest.
    """
    if urllib.parse.urlparse(tracking_uri).scheme.lower() not in ("http", "https"):
        return
    reason = _connection_failure(tracking_uri)
    if reason is not None:
        raise ModelError(
            f"cannot reach the MLflow tracking server at "
            f"{redact_uri_credentials(tracking_uri)} ({reason}), so cannot load {uri}. "
            "Suggestion: check that the server is running and that --tracking-uri (or "
            "mlflow.tracking_uri in the config) gives its address and port."
        )


def _from_sqlite(uri: str, database: Path, tracking_uri: str) -> RegisteredBundle | None:
    """The registered bundle read straight from a local sqlite store, if it can be.

    ``None`` hands over to MLflow's client: an unknown table layout, several
    workspaces with that name, or artifacts that are not local files. A model that
    is certainly not there is refused here.
    """
    name, alias, version = _parse_models_uri(uri)
    if not name or (alias is None and not (version or "").isdigit()):
        return None  # a logged-model id (models:/m-...) or an odd URI: MLflow knows
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
                                ) as connection:
            if alias is not None:
                aliases = connection.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (name, alias)).fetchall()
                version = str(aliases[0][0]) if len(aliases) == 1 else None
            rows = [] if version is None else connection.execute(
                "SELECT run_id, storage_location, status FROM model_versions "
                "WHERE name = ? AND version = ?", (name, int(version))).fetchall()
    except sqlite3.Error:
        return None  # not a layout this code knows (or locked): MLflow's client reads it
    if alias is not None and len(aliases) > 1:
        return None  # the name in several workspaces: MLflow's client picks
    if not rows:
        raise _not_registered(uri, tracking_uri)
    if len(rows) != 1 or rows[0][2] != "READY":
        return None
    run_id, location = rows[0][0], rows[0][1]
    folder = _local_folder(location)
    if folder is None or not (folder / "MLmodel").is_file():
        return None
    return RegisteredBundle(
        bundle=folder / BUNDLE_SUBPATH, name=name, version=str(version), alias=alias,
        run_id=run_id, signature_inputs=_signature_inputs(folder / "MLmodel"),
    )


def _local_folder(location: str | None) -> Path | None:
    """The local folder of a ``file://`` artifact location (``None`` if remote)."""
    if not location:
        return None
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" and Path(location).is_absolute():
        return Path(location)
    return None


def _from_mlflow(uri: str, tracking_uri: str, destination: Path) -> RegisteredBundle:
    """Resolve with MLflow's client and download the bundle and ``MLmodel`` only."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    _require_reachable(uri, tracking_uri)
    name = version = alias = run_id = None
    try:
        if uri.startswith("models:/"):
            name, alias, number = _parse_models_uri(uri)
            try:
                found = (client.get_model_version_by_alias(name, alias) if alias is not None
                         else client.get_model_version(name, number or ""))
            except MlflowException as exc:
                raise _not_registered(uri, tracking_uri) from exc
            version, run_id = str(found.version), found.run_id
            # The version's own storage (the version found, even if the alias moves since):
            # MLflow resolves a models:/ artifact URI through the global tracking URI,
            # whatever tracking_uri it is given.
            base = client.get_model_version_download_uri(name, version).rstrip("/")
            bundle, mlmodel = _download(mlflow, base, tracking_uri, destination)
        else:
            run_id = uri[len("runs:/"):].split("/", 1)[0] or None
            try:
                if run_id is None:
                    raise _no_run(uri, run_id, tracking_uri)
                client.get_run(run_id)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                raise _no_run(uri, run_id, tracking_uri) from exc
            # runs:/ URIs too resolve through the global tracking URI only: set it for
            # the download and put it back.
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(tracking_uri)
            try:
                bundle, mlmodel = _download(mlflow, uri.rstrip("/"), tracking_uri, destination)
            finally:
                mlflow.set_tracking_uri(previous)
    except MlflowException as exc:
        raise ModelError(redact_uri_credentials(
            f"cannot download {uri} from {tracking_uri}: {exc}")) from exc
    return RegisteredBundle(bundle=bundle, name=name, version=version, alias=alias,
                            run_id=run_id, signature_inputs=_signature_inputs(mlmodel))


def _download(mlflow: Any, base: str, tracking_uri: str, destination: Path
              ) -> tuple[Path, Path]:
    """The bundle folder and the ``MLmodel`` file of the model at ``base``, downloaded."""
    found = [
        Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/{part}", dst_path=str(destination / folder),
            tracking_uri=tracking_uri, registry_uri=tracking_uri))
        for part, folder in ((BUNDLE_SUBPATH, "bundle"), ("MLmodel", "mlmodel"))]
    return found[0], found[1]


def _signature_inputs(mlmodel: Path) -> list[str] | None:
    """Input column names of the signature in an ``MLmodel`` file (``None``: none)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when built
    try:
        document = yaml.load(mlmodel.read_text(encoding="utf-8"), Loader=loader) or {}
        inputs = (document.get("signature") or {}).get("inputs")
        columns = json.loads(inputs) if isinstance(inputs, str) else inputs
    except (OSError, yaml.YAMLError, json.JSONDecodeError, AttributeError):
        return None  # no readable signature recorded: nothing to compare with
    if not isinstance(columns, list) or not all(
            isinstance(c, dict) and "name" in c for c in columns):
        return None  # a tensor signature has no column names
    return [str(c["name"]) for c in columns]
