"""One ``APIRouter`` per resource; :func:`churnlens.api.app.create_app` includes them all."""

from churnlens.api.routes import (
    at_risk,
    customers,
    health,
    model,
    monitoring,
    reload,
    retention,
    score,
    session,
    web,
)

__all__ = ["ROUTERS"]

# In the order of the OpenAPI document.
ROUTERS = [health.router, model.router, score.router, customers.router, at_risk.router,
           retention.router, monitoring.router, reload.router, session.router, web.router]
