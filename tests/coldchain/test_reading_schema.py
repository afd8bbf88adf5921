"""The documented reading limits are the decoder's, and HTTP holds them at each bound."""

from __future__ import annotations

from typing import Any

from app.services.coldchain import decode
from tests.coldchain.test_readings import MIN, in_transit, post
from tests.conftest import Api


def _item_schema(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = api.client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/readings"]["post"]["requestBody"]
    batch = body["content"]["application/json"]["schema"]
    return batch, batch["properties"]["readings"]["items"]


def test_documented_bounds_are_the_decoders(api: Api) -> None:
    batch, item = _item_schema(api)
    assert batch["required"] == ["readings"] and batch["additionalProperties"] is False
    assert batch["properties"]["readings"]["maxItems"] == decode.MAX_BATCH
    assert item["required"] == ["device_id", "ts", "temp_c"]
    assert item["additionalProperties"] is False
    assert set(item["properties"]) == decode.ALLOWED_KEYS
    props = item["properties"]
    device = props["device_id"]
    assert (device["minLength"], device["maxLength"]) == (1, decode.MAX_DEVICE_ID_CHARS)
    assert props["ts"]["format"] == "date-time"
    assert props["ts"]["maxLength"] == decode.MAX_TS_CHARS
    assert (props["temp_c"]["minimum"], props["temp_c"]["maximum"]) == decode.TEMP_RANGE
    for name, (low, high) in decode.OPTIONAL.items():
        number, null = props[name]["anyOf"]
        assert number == {"type": "number", "minimum": low, "maximum": high}, name
        assert null == {"type": "null"}


def test_a_reading_at_each_bound_is_accepted_and_beyond_it_refused(api: Api) -> None:
    _, shipment, t0 = in_transit(api)
    device = shipment["device_ids"][0]
    fields = [("temp_c", decode.TEMP_RANGE), *decode.OPTIONAL.items()]
    at_bounds: list[dict[str, Any]] = []
    beyond: list[dict[str, Any]] = []
    for name, (low, high) in fields:
        for value, outside in ((low, low - 0.001), (high, high + 0.001)):
            base = {"device_id": device, "temp_c": 5.0}
            at = t0 + (len(at_bounds) + 1) * MIN
            at_bounds.append({**base, "ts": at.isoformat(), name: value})
            beyond.append({**base, "ts": (at + 60 * MIN).isoformat(), name: outside})
    # All valid: the whole-batch decoder stores them; one bad item each: the item parser.
    assert post(api, "courier", at_bounds) == {
        "accepted": len(at_bounds),
        "duplicates": 0,
        "rejected": [],
    }
    result = post(api, "courier", beyond)
    assert result["accepted"] == 0
    assert [r["index"] for r in result["rejected"]] == list(range(len(beyond)))
    for (name, _), pair in zip(
        fields, zip(*[iter(result["rejected"])] * 2, strict=True), strict=True
    ):
        assert all(r["reason"].startswith(f"{name}:") for r in pair), pair
