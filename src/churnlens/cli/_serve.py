"""``serve``: the HTTP API over the library (FastAPI on uvicorn)."""

from __future__ import annotations

import errno
import gc
import ipaddress
import socket
from typing import Annotated, Any

import typer

from churnlens.cli._app import app, handle_errors, stderr
from churnlens.cli._options import (
    InputFiles,
    ModelOpt,
    NoLedgerOpt,
    OptionalAsOfOpt,
    TrackingOpt,
    TransactionInput,
    check_model_source,
    parse_optional_day,
    reads_inputs,
    reads_transactions,
    scoring_tables,
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


def bind_port(host: str, port: int) -> socket.socket:
    """Take ``host:port`` for the server now, before anything is loaded or announced.

    The socket is handed to uvicorn, so no other process can take the port between
    this check and serving, and a busy port is reported before the (long) loading.

    Raises
    ------
    ChurnlensError
        The port is in use, or the address cannot be bound (exit 2, one line).
    """
    # as uvicorn binds: IPv6 for an address with a colon, else IPv4 ("localhost" is
    # 127.0.0.1); a port in TIME_WAIT after a restart is free, a port someone listens
    # on is not
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # socket.gaierror (an unknown host) included
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ChurnlensError(
                f"--port {port}: {host}:{port} is already in use by another process; nothing "
                f"was served. Suggestion: stop that process, or choose another port, for "
                f"example --port {port + 1 if port < 65535 else 8000}."
            ) from None
        raise ChurnlensError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
            "nothing was served. Suggestion: use an address of this machine (such as "
            "127.0.0.1) and a port above 1023 (lower ones need privileges)."
        ) from None
    sock.set_inheritable(True)
    return sock


@app.command()
@handle_errors
@reads_transactions
@reads_inputs
def serve(
    source: TransactionInput,
    inputs: InputFiles,
    model: ModelOpt = "models:/churnlens@champion",
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    as_of: OptionalAsOfOpt = None,
    tracking_uri: TrackingOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")
                         ] = "warning",
    no_ledger: NoLedgerOpt = False,
) -> None:
    """Serve churn risk, at-risk lists and retention over HTTP (docs at /docs).

    The port is taken before the model and data are loaded: a busy port is a one-line
    error (exit 2) and nothing is announced. The scoring at start-up and on each
    /reload is recorded in the prediction ledger (unless --no-ledger or
    CHURNLENS_LEDGER=off); a ledger failure is a warning, never a reason to stop.

    A model trained with a customer table (--customers-file) or an event table
    (--events-file) needs them here too (exit 2 without): the base is scored with them,
    the at-risk list carries the attributes as columns and filters on them, and
    /reload reads them again.
    """
    import uvicorn

    from churnlens._ledger import ledger_enabled, recorded_message
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
    inputs.check()

    ledger = ledger_enabled(no_ledger, settings)

    def tables(artifact: Any) -> Any:
        # as score: a missing table refused, only the files the model uses read (an
        # unused file is not read), the notes as warning: lines
        return scoring_tables(inputs, artifact, settings, as_of_date, warn=lambda note:
                              stderr().print(f"warning: {note}.", markup=False,
                                             highlight=False, emoji=False))

    def loader() -> ServingState:  # re-run by POST /reload (the tables read again)
        return load_state(transactions, model, settings, as_of=as_of_date, ledger=ledger,
                          inputs_for=tables)

    listening = bind_port(host, port)
    try:
        console = stderr()
        with console.status(f"loading {model} and scoring {transactions}"):
            initial = loader()
        # uvicorn's defaults pick httptools and uvloop (churnlens dependencies): ~20%
        # less CPU per small request than h11 on asyncio.
        server = uvicorn.Server(uvicorn.Config(create_app(loader, initial=initial), host=host,
                                               port=port, log_level=log_level))
        console.print(f"serving {len(initial.scores):,} customers scored at {initial.as_of} "
                      f"with model version {initial.artifact.version or '-'} on "
                      f"http://{host}:{port} (docs: http://{host}:{port}/docs)",
                      highlight=False)
        if initial.ledger_run_id is not None:
            console.print(recorded_message(initial.ledger_run_id, settings),
                          highlight=False)
        elif initial.ledger_error is not None:
            console.print(f"warning: {initial.ledger_error} (serving anyway)",
                          highlight=False)
        # Everything loaded so far (libraries, model, the scored base) lives as long as
        # the process: keep it out of the cyclic garbage collector's full passes, which
        # otherwise took ~100 ms each under load and made the slowest 1% of requests
        # several times slower than the median (measured: full passes 100 ms -> 3 ms).
        gc.collect()
        gc.freeze()
        try:
            server.run(sockets=[listening])
        except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C is the way to stop a server
            pass
        finally:
            gc.unfreeze()  # let the interpreter clean up (and extension modules not complain)
    finally:
        listening.close()
    if not server.started:
        raise RuntimeError("the server stopped before it started; see the lines above")
