"""``POST /reload``: load the model and the data again; on failure keep serving."""

from __future__ import annotations

from fastapi import APIRouter

from churnlens.api.deps import E401, E415, Holder, secured
from churnlens.api.schemas import ReloadResult

router = APIRouter(tags=["service"], dependencies=secured, responses=E401)


@router.post("/reload", response_model=ReloadResult, responses=E415)
async def reload(holder: Holder) -> ReloadResult:
    """Reload the model alias and the data; on failure keep serving the old ones.

    One reload runs at a time: requests arriving while one waits to start share it (and
    its answer), so requests sent together cost at most two reloads."""
    state, error = await holder.reload_shared()
    return ReloadResult(reloaded=error is None, model_version=state.artifact.version,
                        data_as_of=state.as_of, customers_scored=len(state.scores),
                        error=error)
