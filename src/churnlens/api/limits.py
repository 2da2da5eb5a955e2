"""Size limits of the HTTP API (one frozen object, given to :func:`create_app`)."""

from __future__ import annotations

import dataclasses

from churnlens.api.schemas import MAX_CUSTOMERS, MAX_PURCHASES

__all__ = ["ApiLimits"]


@dataclasses.dataclass(frozen=True)
class ApiLimits:
    """How much one request may hold, and where the work on it happens.

    Attributes
    ----------
    max_customers, max_purchases
        Per ``POST /score`` request (413 beyond).
    max_body_bytes
        Any request body (413 beyond, declared or streamed). A million purchases of
        ~70 bytes of JSON each fit well within the default.
    inline_body_bytes
        Bodies up to this size are parsed on the event loop (microseconds); larger
        ones in a worker thread so that a big request never stalls the others.
    batch_purchases
        Requests with at most this many purchases are micro-batched together; larger
        ones are scored on their own, in a worker thread, without holding up the small
        ones.
    """

    max_customers: int = MAX_CUSTOMERS
    max_purchases: int = MAX_PURCHASES
    max_body_bytes: int = 128 * 1024 * 1024
    inline_body_bytes: int = 64 * 1024
    batch_purchases: int = 20_000
