"""``GET /health``: service status, model and data versions (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter

from churnlens._version import __version__
from churnlens.api.deps import Holder
from churnlens.api.schemas import Health

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
async def health(holder: Holder) -> Health:
    """Service status, model and data versions (no key needed)."""
    state = holder.state
    artifact = state.artifact
    return Health(status="ok", churnlens_version=__version__, model_name=artifact.name,
                  model_version=artifact.version, model_alias=artifact.alias,
                  data_as_of=state.as_of, customers_scored=len(state.scores),
                  loaded_at=state.loaded_at, last_reload_error=holder.public_error)
