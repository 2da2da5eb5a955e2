"""``POST /reload``: load the model and the data again; on failure keep serving."""

from __future__ import annotations

from fastapi import APIRouter

from churnlens.api.deps import E401, E415, Holder, secured
from churnlens.api.schemas import ReloadResult

router = APIRouter(tags=["service"], dependencies=secured, responses=E401)


@router.post("/reload", response_model=ReloadResult, responses=E415)
def reload(holder: Holder) -> ReloadResult:
    """Reload the model alias and the data; on failure keep serving the old ones."""
    state, error = holder.reload()
    return ReloadResult(reloaded=error is None, model_version=state.artifact.version,
                        data_as_of=state.as_of, customers_scored=len(state.scores),
                        error=error)
