"""Load benchmark: ``churnlens serve`` against ``mlflow models serve`` of the same model.

In one run, on 127.0.0.1 only, bounded in time:

1. train a model on synthetic data and register it in a temporary sqlite MLflow store
   (``models:/churnlens@champion``);
2. start ``churnlens serve`` on it (API keys on, as deployed) and
   ``mlflow models serve -m models:/churnlens@champion --env-manager local``;
3. check that both give the same churn risk for the same customers;
4. drive each with closed-loop clients for a fixed time and report throughput,
   p50/p99 latency and errors for

   - ``POST /score`` with one customer (raw purchases in; churnlens computes the
     features, the risk, the band, the value at risk and three reasons), 32 clients;
   - ``mlflow serve /invocations`` with one customer (``dataframe_split`` of the
     features, precomputed: it only predicts), 32 clients;
   - for information, ``POST /score?reasons=false`` with one customer, 32 clients;
   - ``POST /score`` with 1,000 customers, 4 clients;
   - ``GET /at-risk`` pages of 100, 32 clients;
   - **mixed** (issue 22): 8 clients of ``POST /score`` (one customer) while 8 readers
     saturate the server with bulk reads (``GET /at-risk`` as the whole CSV list and as
     pages of 1,000, alternately), beside the same 8 scoring clients alone;
   - **reload under load** (issue 22): the mixed load again, with ``POST /reload``
     sent three times, one after the other; each reload's duration is reported, and
     the scoring latency while it runs.

   The two single-customer scenarios alternate in rounds, so background load on the
   machine hits both alike.

Targets (issue 7, raised by issue 14): zero errors, p99 under 50 ms for single-customer
scoring at 32 concurrent clients, and at least 10x the throughput of
``mlflow models serve``. Issue 22: with 8 bulk readers, ``POST /score`` p99 under
100 ms, and every reload done within 5 s under that load (the scoring latency while
reloads run is reported beside it).

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams
(``--client httpx`` uses httpx instead): on a 2-core machine every millisecond of CPU
the client spends is taken from the servers it measures, and httpx spends several
times more per request (both are reported with ``--client``).

Run from the repository root::

    .venv/bin/python bench/bench_api.py                      # ~2 minutes
    .venv/bin/python bench/bench_api.py --customers 3000 --seconds 4 --rounds 1   # quick

Results are printed and written to ``bench/results/bench_api.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
API_KEY = "bench-key-5b0c1f"
TARGET_P99_MS = 50.0
TARGET_RATIO = 10.0
TARGET_MIXED_P99_MS = 100.0
TARGET_RELOAD_S = 5.0


# --- a minimal HTTP/1.1 client ---------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection (Content-Length or chunked responses)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.read()
        if headers.get("connection") == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def raw_request(method: str, port: int, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class HttpxConnection:
    """The same interface over httpx (``--client httpx``)."""

    def __init__(self, port: int) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=60)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        head, _, body = raw.partition(b"\r\n\r\n")
        method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        headers.pop("Host", None)
        headers.pop("Content-Length", None)
        response = await self.client.request(method, path, content=body or None,
                                             headers=headers)
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


# --- load --------------------------------------------------------------------------------


async def load(port: int, requests: list[bytes], *, clients: int, seconds: float,
               warmup: float, client_kind: str, check: Callable[[bytes], bool] | None = None
               ) -> dict[str, Any]:
    """Closed loop: each client sends its next request when the last one is answered."""
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    measure_from, stop_at = started + warmup, started + warmup + seconds
    cpu_before = time.process_time()

    async def client(k: int) -> None:
        connection = (HttpxConnection(port) if client_kind == "httpx" else Connection(port))
        i = k
        try:
            while (now := time.perf_counter()) < stop_at:
                raw = requests[i % len(requests)]
                i += clients
                try:
                    status, body = await connection.request(raw)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    await connection.close()
                    continue
                done = time.perf_counter()
                if now < measure_from or done > stop_at:
                    continue
                latencies.append(done - now)
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:200]!r}")
                elif check is not None and i % 97 == 0 and not check(body):
                    errors.append(f"unexpected answer: {body[:200]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients, "seconds": seconds, "requests": len(latencies),
        "errors": len(errors), "first_errors": errors[:3],
        "throughput_rps": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else math.nan,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else math.nan,
        "max_ms": float(ms.max()) if len(ms) else math.nan,
        "client_cpu_s": time.process_time() - cpu_before,
    }


async def mixed(port: int, scoring: list[bytes], reading: list[bytes], *, clients: int,
                readers: int, seconds: float, warmup: float, client_kind: str,
                check: Callable[[bytes], bool] | None = None, reload: bytes | None = None,
                reloads: int = 0) -> dict[str, Any]:
    """Scoring clients and bulk readers at once (and reloads one after the other)."""
    reload_s: list[float] = []
    reload_errors: list[str] = []

    async def reloader() -> None:
        assert reload is not None
        await asyncio.sleep(warmup)
        connection = Connection(port)
        try:
            for _ in range(reloads):
                began = time.perf_counter()
                status, body = await connection.request(reload)
                reload_s.append(time.perf_counter() - began)
                if status != 200 or not json.loads(body).get("reloaded"):
                    reload_errors.append(f"HTTP {status}: {body[:200]!r}")
                await asyncio.sleep(0.5)
        finally:
            await connection.close()

    tasks = [load(port, scoring, clients=clients, seconds=seconds, warmup=warmup,
                  client_kind=client_kind, check=check),
             load(port, reading, clients=readers, seconds=seconds, warmup=warmup,
                  client_kind=client_kind)]
    if reloads:
        tasks.append(reloader())
    score, read, *_ = await asyncio.gather(*tasks)
    result = {**score, "readers": read, "reload_s": reload_s, "reload_errors": reload_errors}
    result["errors"] += read["errors"] + len(reload_errors) + max(0, reloads - len(reload_s))
    return result


def merge(runs: list[dict[str, Any]], samples: list[np.ndarray] | None = None
          ) -> dict[str, Any]:
    """Totals over rounds (throughput over the summed measured time)."""
    seconds = sum(r["seconds"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    return {**runs[0], "seconds": seconds, "requests": requests,
            "errors": sum(r["errors"] for r in runs),
            "first_errors": [e for r in runs for e in r["first_errors"]][:3],
            "throughput_rps": requests / seconds,
            "p50_ms": float(np.median([r["p50_ms"] for r in runs])),
            "p99_ms": float(max(r["p99_ms"] for r in runs)),
            "max_ms": float(max(r["max_ms"] for r in runs)),
            "client_cpu_s": sum(r["client_cpu_s"] for r in runs), "rounds": runs}


# --- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], port: int, ready_path: str,
           log: Path, timeout: float = 300) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group; stop that group (and only it) at exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n"
                                   f"{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} not ready after {timeout:.0f} s")
            try:
                with socket.create_connection((HOST, port), timeout=1) as s:
                    s.sendall(raw_request("GET", port, ready_path,
                                          headers={"X-API-Key": API_KEY}))
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            time.sleep(0.5)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# --- the run -----------------------------------------------------------------------------


def train_and_register(tx: pd.DataFrame, as_of: str, tracking_uri: str, artifacts: Path
                       ) -> Any:
    import mlflow

    from churnlens._config import load_config
    from churnlens._pipeline import train

    # The experiment's artifacts go to the temporary folder too (MLflow's default is
    # ./mlruns in the working directory).
    mlflow.MlflowClient(tracking_uri).create_experiment(
        "churnlens", artifact_location=artifacts.as_uri())
    settings = load_config(overrides={
        "mlflow.tracking_uri": tracking_uri, "backtest_steps": 1, "snapshots.count": 6,
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train(tx, as_of=as_of, settings=settings)
    assert run.registration is not None
    assert run.registration.alias == "champion"
    return run.artifact


def history(tx: pd.DataFrame, cid: Any) -> dict[str, Any]:
    rows = tx.loc[tx["customer_id"] == cid]
    return {"customer_id": cid, "purchases": [
        {"timestamp": ts.isoformat(), "amount": round(float(a), 2)}
        for ts, a in zip(rows["timestamp"], rows["amount"], strict=True)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000,
                        help="synthetic customers of the served base (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="measured seconds per scenario and round (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of the two single-customer scenarios")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client", choices=("asyncio", "httpx"), default="asyncio")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="churnlens-bench-api-") as folder:
        return run(args, Path(folder))


def run(args: argparse.Namespace, tmp: Path) -> int:
    """The whole benchmark, with every file in ``tmp``."""
    import churnlens
    from churnlens import compute_features, generate_transactions, load_transactions

    began = time.perf_counter()
    as_of = "2024-12-31"
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    raw = generate_transactions(args.customers, seed=args.seed, start="2023-01-01", end=as_of)
    raw.to_parquet(tmp / "tx.parquet")
    tx = load_transactions(raw).transactions
    print(f"data: {len(tx):,} transactions, {tx['customer_id'].nunique():,} customers "
          f"(seed {args.seed}); training and registering in {tracking_uri}", flush=True)
    t0 = time.perf_counter()
    artifact = train_and_register(raw, as_of, tracking_uri, tmp / "mlartifacts")
    print(f"trained in {time.perf_counter() - t0:.0f} s: {artifact.model.best_iteration_} "
          f"trees, {len(artifact.feature_names)} features", flush=True)

    # Request pools: the same customers for both servers.
    rng = np.random.default_rng(args.seed)
    ids = rng.choice(tx["customer_id"].unique(), size=min(500, tx["customer_id"].nunique()),
                     replace=False).tolist()
    features = compute_features(tx, as_of, windows_days=artifact.windows_days)
    features = features.set_index("customer_id").loc[ids, artifact.feature_names]
    # mlflow serve runs `uvicorn` from PATH: the venv's bin must come first.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "CHURNLENS_API_KEYS": API_KEY,
           "PYTHONWARNINGS": "ignore", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    ours, theirs = free_port(), free_port()
    key = {"X-API-Key": API_KEY}
    single = [raw_request("POST", ours, "/score", json.dumps(
        {"as_of": as_of, "customers": [history(tx, cid)]}).encode(), key) for cid in ids]
    mlflow_single = [raw_request("POST", theirs, "/invocations", json.dumps(
        {"dataframe_split": {"columns": list(features.columns), "data": [
            [None if pd.isna(v) else float(v) for v in row]]}}).encode())
        for row in features.itertuples(index=False)]
    many_ids = [rng.choice(tx["customer_id"].unique(), size=1000, replace=False).tolist()
                for _ in range(4)]
    by_customer = {cid: history(tx, cid) for cid in set().union(*map(set, many_ids))}
    no_reasons = [raw_request("POST", ours, "/score?reasons=false", json.dumps(
        {"as_of": as_of, "customers": [history(tx, cid)]}).encode(), key) for cid in ids]
    thousand = [raw_request("POST", ours, "/score", json.dumps(
        {"as_of": as_of, "customers": [by_customer[c] for c in group]}).encode(), key)
        for group in many_ids]
    pages = [raw_request("GET", ours, f"/at-risk?limit=100&offset={offset}", headers=key)
             for offset in range(0, min(args.customers, 5000), 100)]
    # bulk reads: the whole at-risk list as CSV, and pages of 1,000
    bulk = [raw_request("GET", ours, path, headers=key) for offset in range(0, 5000, 1000)
            for path in ("/at-risk?format=csv", f"/at-risk?limit=1000&offset={offset}")]
    reload = raw_request("POST", ours, "/reload", b"{}", key)

    results: dict[str, Any] = {}
    with (
        server([str(BIN / "churnlens"), "serve", "--transactions", str(tmp / "tx.parquet"),
                "--model", "models:/churnlens@champion", "--tracking-uri", tracking_uri,
                "--host", HOST, "--port", str(ours)], env, ours, "/health",
               tmp / "churnlens-serve.log"),
        server([str(BIN / "mlflow"), "models", "serve", "-m", "models:/churnlens@champion",
                "--env-manager", "local", "-h", HOST, "-p", str(theirs)], env, theirs,
               "/ping", tmp / "mlflow-serve.log"),
    ):
        print(f"servers up after {time.perf_counter() - began:.0f} s: churnlens on :{ours}, "
              f"mlflow on :{theirs}", flush=True)
        agreement = asyncio.run(same_answers(ours, theirs, single[:20], mlflow_single[:20]))
        print(f"same churn risk from both servers for 20 customers (max difference "
              f"{agreement:.2e})", flush=True)

        def one(body: bytes) -> bool:
            return len(json.loads(body)["results"]) == 1

        def ml(body: bytes) -> bool:
            return len(json.loads(body)["predictions"]) == 1

        runs: dict[str, list[dict[str, Any]]] = {"churnlens": [], "mlflow": []}
        for r in range(args.rounds):
            for name, port, pool, check in (("churnlens", ours, single, one),
                                            ("mlflow", theirs, mlflow_single, ml)):
                run = asyncio.run(load(port, pool, clients=args.clients, seconds=args.seconds,
                                       warmup=args.warmup, client_kind=args.client,
                                       check=check))
                runs[name].append(run)
                print(f"  round {r + 1} {name:9s} {run['throughput_rps']:7.0f} req/s  p50 "
                      f"{run['p50_ms']:6.1f} ms  p99 {run['p99_ms']:6.1f} ms  errors "
                      f"{run['errors']}", flush=True)
        results["score_1_customer"] = merge(runs["churnlens"])
        results["mlflow_1_customer"] = merge(runs["mlflow"])
        results["score_1_customer_no_reasons"] = asyncio.run(load(
            ours, no_reasons, clients=args.clients, seconds=args.seconds, warmup=args.warmup,
            client_kind=args.client, check=one))
        results["score_1000_customers"] = asyncio.run(load(
            ours, thousand, clients=4, seconds=args.seconds, warmup=args.warmup,
            client_kind=args.client,
            check=lambda body: len(json.loads(body)["results"]) >= 990))
        results["at_risk_pages"] = asyncio.run(load(
            ours, pages, clients=args.clients, seconds=args.seconds, warmup=args.warmup,
            client_kind=args.client,
            check=lambda body: len(json.loads(body)["items"]) == 100))
        results["score_8_clients_alone"] = asyncio.run(load(
            ours, single, clients=8, seconds=args.seconds, warmup=args.warmup,
            client_kind=args.client, check=one))
        results["mixed_score_with_8_bulk_readers"] = asyncio.run(mixed(
            ours, single, bulk, clients=8, readers=8, seconds=args.seconds,
            warmup=args.warmup, client_kind=args.client, check=one))
        results["reload_under_load"] = asyncio.run(mixed(
            ours, single, bulk, clients=8, readers=8, seconds=max(args.seconds, 12.0),
            warmup=args.warmup, client_kind=args.client, check=one, reload=reload,
            reloads=3))
        for name in ("mixed_score_with_8_bulk_readers", "reload_under_load"):
            r = results[name]
            print(f"  {name}: score {r['throughput_rps']:.0f} req/s p99 {r['p99_ms']:.1f} ms; "
                  f"readers {r['readers']['throughput_rps']:.1f} req/s p99 "
                  f"{r['readers']['p99_ms']:.0f} ms; reloads "
                  f"{', '.join(f'{x:.1f} s' for x in r['reload_s']) or '-'}", flush=True)

    ratio = (results["score_1_customer"]["throughput_rps"]
             / results["mlflow_1_customer"]["throughput_rps"])
    single_p99 = results["score_1_customer"]["p99_ms"]
    errors = sum(r["errors"] for r in results.values())
    mixed_p99 = results["mixed_score_with_8_bulk_readers"]["p99_ms"]
    reload_s = results["reload_under_load"]["reload_s"]
    slowest_reload = max(reload_s) if reload_s else math.inf
    document = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "churnlens": churnlens.__version__,
                    "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                    "platform": platform.platform()},
        "data": {"customers": args.customers, "transactions": len(tx), "seed": args.seed},
        "client": args.client, "scenarios": results, "ratio_vs_mlflow": ratio,
        "targets": {"p99_ms": TARGET_P99_MS, "ratio": TARGET_RATIO, "errors": 0,
                    "mixed_p99_ms": TARGET_MIXED_P99_MS, "reload_s": TARGET_RELOAD_S},
        "met": {"errors": errors == 0, "p99": single_p99 < TARGET_P99_MS,
                "ratio": ratio >= TARGET_RATIO, "mixed_p99": mixed_p99 < TARGET_MIXED_P99_MS,
                "reload": slowest_reload < TARGET_RELOAD_S},
        "wall_s": time.perf_counter() - began,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench_api.json").write_text(json.dumps(document, indent=2, default=str))
    print_table(results, ratio)
    met = {k: "met" if v else "MISSED" for k, v in document["met"].items()}
    print(f"targets: zero errors {met['errors']} ({errors}); p99 single-customer < "
          f"{TARGET_P99_MS:.0f} ms {met['p99']} ({single_p99:.1f} ms); >= {TARGET_RATIO:.0f}x "
          f"mlflow serve {met['ratio']} ({ratio:.2f}x); with 8 bulk readers p99 < "
          f"{TARGET_MIXED_P99_MS:.0f} ms {met['mixed_p99']} ({mixed_p99:.1f} ms), reloads < "
          f"{TARGET_RELOAD_S:.0f} s {met['reload']} (slowest {slowest_reload:.1f} s). "
          f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"total {time.perf_counter() - began:.0f} s.")
    return 0 if all(document["met"].values()) else 1


async def same_answers(ours: int, theirs: int, single: list[bytes], mlflow: list[bytes]
                       ) -> float:
    a, b = Connection(ours), Connection(theirs)
    worst = 0.0
    try:
        for raw_ours, raw_theirs in zip(single, mlflow, strict=True):
            status_a, body_a = await a.request(raw_ours)
            status_b, body_b = await b.request(raw_theirs)
            assert status_a == status_b == 200, (body_a[:300], body_b[:300])
            risk_a = json.loads(body_a)["results"][0]["churn_risk"]
            prediction = json.loads(body_b)["predictions"][0]
            risk_b = prediction["churn_risk"] if isinstance(prediction, dict) else prediction
            worst = max(worst, abs(risk_a - risk_b))
    finally:
        await a.close()
        await b.close()
    if worst > 1e-6:
        raise AssertionError(f"the two servers disagree: churn risk differs by {worst}")
    return worst


def print_table(results: dict[str, Any], ratio: float) -> None:
    names = {
        "score_1_customer": "churnlens POST /score, 1 customer",
        "mlflow_1_customer": "mlflow serve /invocations, 1 customer (features given)",
        "score_1_customer_no_reasons": "churnlens POST /score?reasons=false, 1 customer",
        "score_1000_customers": "churnlens POST /score, 1,000 customers",
        "at_risk_pages": "churnlens GET /at-risk, pages of 100",
        "score_8_clients_alone": "churnlens POST /score, 1 customer, 8 clients alone",
        "mixed_score_with_8_bulk_readers": "... the same with 8 bulk /at-risk readers",
        "reload_under_load": "... and 3 POST /reload meanwhile",
    }
    print()
    print(f"| {'scenario':56s} | clients | requests | errors | req/s  | p50 ms | p99 ms |")
    print(f"|{'-' * 58}|---------|----------|--------|--------|--------|--------|")
    for key, label in names.items():
        r = results[key]
        print(f"| {label:56s} | {r['clients']:7d} | {r['requests']:8,d} | {r['errors']:6d} | "
              f"{r['throughput_rps']:6.0f} | {r['p50_ms']:6.1f} | {r['p99_ms']:6.1f} |")
        if "readers" in r:
            read = r["readers"]
            label = "  (the 8 bulk readers: CSV list / pages of 1,000)"
            print(f"| {label:56s} | {read['clients']:7d} | {read['requests']:8,d} | "
                  f"{read['errors']:6d} | {read['throughput_rps']:6.1f} | "
                  f"{read['p50_ms']:6.0f} | {read['p99_ms']:6.0f} |")
    reload_s = results["reload_under_load"]["reload_s"]
    print(f"\nPOST /reload under that load: {', '.join(f'{x:.2f} s' for x in reload_s)}")
    print(f"\nsingle-customer throughput, churnlens / mlflow serve: {ratio:.2f}x "
          f"(customers scored per second with 1,000 per request: "
          f"{results['score_1000_customers']['throughput_rps'] * 1000:,.0f})")


if __name__ == "__main__":
    raise SystemExit(main())
