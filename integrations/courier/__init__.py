"""Courier tracking APIs: we poll each courier organisation's event stream.

This package is the contract and its HTTP client only (``parse_page``, ``CourierClient``
around an injected ``httpx.Client``). Feeds live in the database and are the use cases of
``app.services.interop.courier``: one ``courier_feed`` row per courier organisation
(``configure_feed``) holds its ``base_url``, the bearer ``auth_token`` we present (stored
because it must be sent; never returned, audited or logged), ``enabled``, and the ``cursor``
we have read up to.

The contract a courier implements::

    GET {base_url}/events?cursor={cursor}&limit={limit}
    Authorization: Bearer {auth_token}

``cursor`` is omitted on the first poll (from the start of the stream); ``limit`` is the most
events we want. The answer (200, ``application/json``)::

    {"events": [Event, ...], "next_cursor": str | null}

    Event = {"type": "reading", "device_id": str, "ts": RFC 3339 with offset,
             "temp_c": number, "lat"?: number, "lon"?: number}
          | {"type": "scan", "shipment_ref": str, "action": "picked_up|handoff|delivered",
             "ts": RFC 3339 with offset, "coi": str, "from_party": str, "to_party": str,
             "lat"?: number, "lon"?: number}

- ``next_cursor`` is the opaque position after this page's last event: we send it back to
  get what follows. It is null only when nothing follows the cursor we sent, and then
  ``events`` is empty (we keep our cursor and ask again later). A page with events and no
  new cursor, or a cursor that does not advance, is malformed.
- Events come in the courier's order and are stored in that order (a pickup scan before the
  readings it makes attachable). Fewer than ``limit`` events means "caught up for now".
- ``shipment_ref`` is our shipment id, or the container serial of the courier's one open
  shipment using that container. A reading's ``device_id`` must be a logger of the courier.
  Other reading fields of ``POST /readings`` (``humidity_pct``, ``shock_g`` …) are accepted;
  unknown fields are ignored.
- Errors: 5xx, timeouts and network errors are retried with exponential backoff (1, 2, 4 s
  …); 429 is retried after ``Retry-After`` (seconds or an HTTP-date), or, when that is longer
  than the poller waits, the feed is not polled again before then; other 3xx/4xx answers
  stop the poll (wrong URL or token). Nothing is stored and the cursor stays put.

Processing (the service's ``apply_page``): a malformed page (not JSON, wrong envelope) is
refused whole: the cursor does not move and ``last_error`` says why. A well-formed page's
events are each checked alone: a bad event is rejected (counted, and kept in
``recent_rejections``) and the others stored. Readings go through the ingest service, scans
through the custody service (with the same COI check, so a wrong label raises the critical
alert), as the feed's courier principal. A page's data and the new cursor commit in one
transaction: a restart neither skips nor repeats events.
"""

from integrations.courier._client import DEFAULT_TIMEOUT_S, CourierClient, retry_after_s
from integrations.courier._contract import (
    MAX_EVENTS_PER_PAGE,
    CourierError,
    CourierRateLimited,
    CourierRefused,
    CourierUnavailable,
    EventPage,
    MalformedPage,
    ScanEvent,
    event_type,
    parse_page,
    parse_scan,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_EVENTS_PER_PAGE",
    "CourierClient",
    "CourierError",
    "CourierRateLimited",
    "CourierRefused",
    "CourierUnavailable",
    "EventPage",
    "MalformedPage",
    "ScanEvent",
    "event_type",
    "parse_page",
    "parse_scan",
    "retry_after_s",
]
