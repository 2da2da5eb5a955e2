"""``GET /model``: the loaded model."""

from __future__ import annotations

from fastapi import APIRouter

from churnlens._io import json_ready
from churnlens.api.deps import E401, CurrentState, secured
from churnlens.api.schemas import ModelInfo

router = APIRouter(tags=["model"], dependencies=secured, responses=E401)


@router.get("/model", response_model=ModelInfo)
async def model_info(state: CurrentState) -> ModelInfo:
    """Horizon, as-of, features, validation metrics and backtest of the model."""
    a = state.artifact
    return ModelInfo(name=a.name, version=a.version, alias=a.alias, run_id=a.run_id,
                     horizon_days=a.horizon_days, as_of=a.as_of,
                     windows_days=list(a.windows_days), features=a.feature_names,
                     metrics=json_ready(a.metrics),
                     backtest=json_ready((a.backtest or {}).get("runs", [])))
