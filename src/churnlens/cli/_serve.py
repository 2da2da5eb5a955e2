"""``serve``: the HTTP API over the library (FastAPI on uvicorn)."""

from __future__ import annotations

import gc
import ipaddress
from typing import Annotated

import typer

from churnlens.cli._app import app, handle_errors, stderr
from churnlens.cli._options import (
    ModelOpt,
    OptionalAsOfOpt,
    TrackingOpt,
    TransactionInput,
    check_model_source,
    parse_optional_day,
    reads_transactions,
)
from churnlens.exceptions import ChurnlensError


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1 addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@handle_errors
@reads_transactions
def serve(
    source: TransactionInput,
    model: ModelOpt = "models:/churnlens@champion",
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    as_of: OptionalAsOfOpt = None,
    tracking_uri: TrackingOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")
                         ] = "warning",
) -> None:
    """Serve churn risk, at-risk lists and retention over HTTP (docs at /docs)."""
    import uvicorn

    from churnlens.api import API_KEYS_ENV, ServingState, api_keys, create_app, load_state

    if not is_loopback(host) and not api_keys():
        raise ChurnlensError(
            f"refusing to listen on {host} without API keys. Suggestion: set {API_KEYS_ENV}="
            "key1,key2 (clients send X-API-Key), or bind to 127.0.0.1."
        )
    if not 0 < port < 65536:
        raise ChurnlensError(f"--port must be between 1 and 65535, got {port}.")
    as_of_date = parse_optional_day(as_of)
    check_model_source(model)
    settings = source.settings(**{"mlflow.tracking_uri": tracking_uri})
    transactions = source.path

    def loader() -> ServingState:  # re-run by POST /reload
        return load_state(transactions, model, settings, as_of=as_of_date)

    console = stderr()
    with console.status(f"loading {model} and scoring {transactions}"):
        initial = loader()
    console.print(f"serving {len(initial.scores):,} customers scored at {initial.as_of} with "
                  f"model version {initial.artifact.version or '-'} on http://{host}:{port} "
                  f"(docs: http://{host}:{port}/docs)", highlight=False)
    # Everything loaded so far (libraries, model, the scored base) lives as long as the
    # process: keep it out of the cyclic garbage collector's full passes, which
    # otherwise took ~100 ms each under load and made the slowest 1% of requests
    # several times slower than the median (measured: full passes 100 ms -> 3 ms).
    gc.collect()
    gc.freeze()
    try:
        # uvicorn's defaults pick httptools and uvloop (churnlens dependencies): ~20%
        # less CPU per small request than h11 on asyncio.
        uvicorn.run(create_app(loader, initial=initial), host=host, port=port,
                    log_level=log_level)
    finally:
        gc.unfreeze()  # let the interpreter clean up (and extension modules not complain)
