"""Device ids where they enter: one canonical form, whatever the sender wrote.

A GS1 EPC URN and its GS1 Digital Link name the same logger; stored as two ids they would
be two devices, and one logger could ride in two shipments at once. Every entry (REST,
MQTT, EPCIS, courier feeds, principals) names its devices through ``canonical`` (the rule
itself is ``integrations.gs1.device_id``); a malformed GS1 form is refused (422), never
stored as a third name.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.errors import Invalid
from integrations.gs1 import MalformedId
from integrations.gs1 import device_id as canonical_device_id

MALFORMED = "device-id-malformed"


def canonical(device_id: str, *, loc: str) -> str:
    """The canonical id of a device named at ``loc``; 422 ``device-id-malformed`` if not."""
    try:
        return canonical_device_id(device_id)
    except MalformedId as exc:
        raise Invalid(
            f"device id {device_id!r} is refused: {exc.reason}",
            code=MALFORMED,
            errors=[{"loc": loc, "msg": exc.reason}],
        ) from exc


def canonical_list(device_ids: Iterable[str], *, loc: str) -> list[str]:
    """Each id canonical (``loc/<index>`` on a fault); 422 if two name the same device."""
    out: list[str] = []
    for k, given in enumerate(device_ids):
        device_id = canonical(given, loc=f"{loc}/{k}")
        if device_id in out:
            raise Invalid(
                f"device ids must be unique: {given!r} names the same device as "
                f"item {out.index(device_id)} ({device_id})",
                errors=[{"loc": f"{loc}/{k}", "msg": "the same device twice"}],
            )
        out.append(device_id)
    return out
