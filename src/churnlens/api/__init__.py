"""The HTTP API: churn risk paired with actual retention, for marketing and services.

Thin by design: every route handler parses, calls one library function and formats.

- :mod:`~churnlens.api.app`: :func:`create_app` wires the routers, the middleware, the
  exception handlers and the lifespan;
- :mod:`~churnlens.api.state`: the served state (model, scored base) and ``/reload``;
- :mod:`~churnlens.api.schemas`: request and response models;
- :mod:`~churnlens.api.routes`: one ``APIRouter`` per resource;
- :mod:`~churnlens.api.scoring`: ``POST /score``'s micro-batched scoring, the data
  checked by the loader's rules;
- :mod:`~churnlens.api.fast_score`: plain ``POST /score`` requests answered before the
  framework's machinery, after the checks every request passes
  (:class:`~churnlens.api.errors.RequestGuard`: Host on loopback, body size, JSON);
- :mod:`~churnlens.api.reads`: bulk reads on their own thread, behind a bounded queue,
  so that they never starve scoring.

Importing this package starts nothing; ``churnlens serve`` runs the app.
"""

from churnlens.api.app import create_app
from churnlens.api.deps import API_KEYS_ENV, api_keys
from churnlens.api.limits import ApiLimits
from churnlens.api.state import ServingState, build_state, load_state

__all__ = ["API_KEYS_ENV", "ApiLimits", "ServingState", "api_keys", "build_state",
           "create_app", "load_state"]
