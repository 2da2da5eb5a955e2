"""Size limits of the HTTP API (one frozen object, given to :func:`create_app`)."""

from __future__ import annotations

import dataclasses

from churnlens.api.schemas import MAX_CUSTOMERS, MAX_EVENTS, MAX_PURCHASES

__all__ = ["BYTES_PER_CUSTOMER", "BYTES_PER_PURCHASE", "ApiLimits"]

# The most a purchase ({"timestamp": "2024-03-05T14:30:00.123456+01:00", "amount":
# 1234.56} with indentation) and a customer (an id of 256 characters, the keys) take.
BYTES_PER_PURCHASE = 96
BYTES_PER_CUSTOMER = 512


@dataclasses.dataclass(frozen=True)
class ApiLimits:
    """How much one request may hold, and where the work on it happens.

    Attributes
    ----------
    max_customers, max_purchases, max_events
        Per ``POST /score`` request (413 beyond). Events (issue 21) share the body limit
        with the purchases: a request holding both at their maximum is refused by
        ``max_body_bytes``.
    max_body_bytes
        Any request body (413 beyond, declared or streamed). Default (None): what the
        request limits imply, :meth:`body_bytes`.
    inline_body_bytes
        Bodies up to this size are parsed on the event loop (microseconds); larger
        ones in a worker thread so that a big request never stalls the others.
    batch_purchases
        Requests with at most this many purchases (and events) are micro-batched
        together; larger ones are scored on their own, in a worker thread, without
        holding up the small ones.
    """

    max_customers: int = MAX_CUSTOMERS
    max_purchases: int = MAX_PURCHASES
    max_events: int = MAX_EVENTS
    max_body_bytes: int | None = None
    inline_body_bytes: int = 64 * 1024
    batch_purchases: int = 20_000

    def body_bytes(self) -> int:
        """The largest body accepted: ``max_body_bytes``, or what the limits imply.

        ``max_purchases`` purchases of :data:`BYTES_PER_PURCHASE` and ``max_customers``
        customers of :data:`BYTES_PER_CUSTOMER`, plus 64 KiB: about twice what the
        largest valid request takes as compact JSON (a purchase with a full date-time
        and offset is ~56 bytes), so even an indented one fits (101 MB by default).
        """
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return (self.max_purchases * BYTES_PER_PURCHASE
                + self.max_customers * BYTES_PER_CUSTOMER + 64 * 1024)
