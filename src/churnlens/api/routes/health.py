"""``GET /health``: service status, model and data versions (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter

from churnlens._version import __version__
from churnlens.api.deps import Holder, Reads
from churnlens.api.monitoring import CACHE
from churnlens.api.schemas import Health

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
async def health(holder: Holder, reads: Reads) -> Health:
    """Service status, model and data versions, and the number of monitoring alerts
    (no key needed). ``alerts`` is null while ``GET /monitoring``'s report is being
    computed (``churnlens serve`` computes it before a state is served; for a state
    built otherwise the first ``/health`` starts it) or when monitoring is
    unavailable."""
    state = holder.state
    artifact = state.artifact
    return Health(status="ok", churnlens_version=__version__, model_name=artifact.name,
                  model_version=artifact.version, model_alias=artifact.alias,
                  data_as_of=state.as_of, customers_scored=len(state.scores),
                  loaded_at=state.loaded_at, last_reload_error=holder.public_error,
                  alerts=CACHE.alert_count(state, reads))
