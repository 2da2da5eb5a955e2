"""The monitoring report of the served state: ``GET /monitoring`` and ``/health``'s count.

The report (:func:`churnlens._monitoring.monitor_ledger`) is computed from the served
transactions and the ledger at the served tracking URI (``state.settings``), once per
served state. ``load_state`` (every start and ``POST /reload`` of ``churnlens serve``)
computes it before the state is served (:func:`churnlens.api.state.warm_monitoring`,
kept in the state's read cache); for a state built otherwise it is computed on the read
thread, beside the other bulk reads, when first asked for. A failure (no
ledger entry, a store that cannot be read) is kept for the state too, so a health check
polling every few seconds never re-reads the store.

``/health`` never waits for it: it answers the count when the report is known, and
otherwise starts computing it in the background and answers ``null``.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

from churnlens.api.reads import ReadQueue
from churnlens.api.state import MONITORING_KEY, ServingState
from churnlens.exceptions import ChurnlensError, EmptyDataError

__all__ = ["CACHE", "MonitorCache", "MonitoringUnavailableError", "monitoring_document"]

# Served states whose report is kept (older states are dropped first; a state that is
# no longer referenced drops out on its own).
_MAX_STATES = 4


class MonitoringUnavailableError(EmptyDataError):
    """The served state has no settings (built from a frame, not by ``load_state``)."""


def monitoring_document(state: ServingState) -> dict[str, Any]:
    """``monitor(...).to_dict()`` of the served transactions and ledger (blocking).

    Raises
    ------
    MonitoringUnavailableError
        The state was built without settings (no tracking URI to read the ledger from).
    ChurnlensError
        An empty ledger (:class:`~churnlens.exceptions.EmptyDataError`), or a store that
        cannot be read.
    """
    from churnlens._monitoring import monitor_ledger

    settings = getattr(state, "settings", None)
    if settings is None:
        raise MonitoringUnavailableError(
            "monitoring is unavailable: this service was started without settings (no "
            "tracking URI to read the ledger from). Suggestion: start it with churnlens "
            "serve, or build the state with load_state.")
    return monitor_ledger(state.transactions, settings).to_dict()


class MonitorCache:
    """The report (or the failure) of each served state, computed once on the read thread."""

    def __init__(self) -> None:
        # id(state) -> (a weak reference to the state, the document or the failure)
        self._known: dict[int, tuple[weakref.ref[ServingState], Any]] = {}
        self._running: dict[int, asyncio.Future[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def _lookup(self, state: ServingState) -> tuple[bool, Any]:
        # computed before the state was served (api.state.warm_monitoring, load_state)
        prepared = state.cached_read(MONITORING_KEY)
        if prepared is not None:
            return True, prepared
        known = self._known.get(id(state))
        if known is None or known[0]() is not state:
            return False, None
        return True, known[1]

    def _keep(self, state: ServingState, outcome: Any) -> None:
        for key, (ref, _) in list(self._known.items()):
            if ref() is None:
                del self._known[key]
        while len(self._known) >= _MAX_STATES:
            del self._known[next(iter(self._known))]
        self._known[id(state)] = (weakref.ref(state), outcome)

    async def _compute(self, state: ServingState, reads: ReadQueue) -> Any:
        """The document, or the ChurnlensError that says why there is none."""
        key = id(state)
        running = self._running.get(key)
        if running is not None and running.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            try:
                outcome: Any = await reads.run(monitoring_document, state)
            except ChurnlensError as exc:
                outcome = exc
            self._keep(state, outcome)
            future.set_result(outcome)
            return outcome
        except BaseException as exc:  # a busy queue (503), a cancelled request: not kept
            future.set_exception(exc)
            future.exception()  # (retrieved: no "never retrieved" warning)
            raise
        finally:
            self._running.pop(key, None)

    async def report(self, state: ServingState, reads: ReadQueue) -> dict[str, Any]:
        """The state's report; raises the ChurnlensError that says why there is none."""
        found, outcome = self._lookup(state)
        if not found:
            outcome = await self._compute(state, reads)
        if isinstance(outcome, ChurnlensError):
            raise outcome
        return outcome

    def alert_count(self, state: ServingState, reads: ReadQueue) -> int | None:
        """The number of alerts if known; else start computing it and return None.

        None too when monitoring is unavailable for this state.
        """
        found, outcome = self._lookup(state)
        if found:
            return None if isinstance(outcome, ChurnlensError) else int(outcome["alert_count"])
        if getattr(state, "settings", None) is not None and id(state) not in self._running:
            task = asyncio.get_running_loop().create_task(self._quietly(state, reads))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return None

    async def _quietly(self, state: ServingState, reads: ReadQueue) -> None:
        # a background fill: on a failure not kept (a busy queue), the next request retries
        with contextlib.suppress(Exception):
            await self._compute(state, reads)


#: The one cache of the process (keyed by the served state, so shared by every app).
CACHE = MonitorCache()
