"""``GET /monitoring``: the ledger's predictions against what happened, and drift."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from churnlens._redact import redact_uri_credentials
from churnlens.api.deps import E401, CurrentState, Reads, Responses, secured
from churnlens.api.monitoring import CACHE
from churnlens.api.schemas import ErrorDetail, MonitoringReport
from churnlens.exceptions import ChurnlensError, EmptyDataError

router = APIRouter(tags=["monitoring"], dependencies=secured, responses=E401)

_ERRORS: Responses = {
    404: {"model": ErrorDetail, "description": "No scoring entry in the ledger, or a "
                                               "service started without settings."},
    503: {"model": ErrorDetail, "description": "The ledger's store cannot be read."},
}


@router.get("/monitoring", response_model=MonitoringReport, responses=_ERRORS)
async def monitoring(state: CurrentState, reads: Reads) -> MonitoringReport:
    """Every recorded prediction whose horizon has closed in the served data against
    what happened (cohort retention and CRR with the interval, realized AUC, Brier,
    calibration, by band and segment), feature drift and risk level of the latest and
    open ones, and the alerts: the same document as ``churnlens monitor --json``.
    Computed once per served state (``POST /reload`` refreshes it)."""
    try:
        document = await CACHE.report(state, reads)
    except EmptyDataError as exc:  # (messages name the store: credentials masked)
        raise HTTPException(404, detail=redact_uri_credentials(str(exc))) from None
    except ChurnlensError as exc:
        raise HTTPException(503, detail=redact_uri_credentials(str(exc))) from None
    return MonitoringReport(**document)
