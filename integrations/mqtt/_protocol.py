"""The MQTT side of ingest: topics, the key in a user property, payload decoding, the client.

No database here: ``Refused`` carries the code and reason an outcome is published with.
"""

from __future__ import annotations

import json
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

DEFAULT_ROOT = "v2v"
AUTH_PROPERTY = "authorization"
MAX_PAYLOAD_BYTES = 1024 * 1024
# How long the broker keeps our subscription and queues messages while no worker is up.
SESSION_EXPIRY_S = 7 * 24 * 3600
QOS = 1


class Refused(Exception):
    """The whole message is refused; ``code`` and ``reason`` go back on the acks topic."""

    def __init__(self, code: str, reason: str, *, who: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason, self.who = code, reason, who  # who: logged, not published


def readings_filter(root: str = DEFAULT_ROOT, shared_group: str = "") -> str:
    """The subscription: every device's readings topic, shared by a group when one is set."""
    topic = f"{root}/devices/+/readings"
    if not shared_group:
        return topic
    if any(c in shared_group for c in "/+#"):
        raise ValueError(f"shared subscription group {shared_group!r} may not contain / + #")
    return f"$share/{shared_group}/{topic}"


def acks_topic(device_id: str, root: str = DEFAULT_ROOT) -> str:
    return f"{root}/devices/{device_id}/acks"


def device_of(topic: str, root: str = DEFAULT_ROOT) -> str | None:
    """The device id of a readings topic, or None when the topic is not one."""
    prefix, suffix = f"{root}/devices/", "/readings"
    if not topic.startswith(prefix) or not topic.endswith(suffix):
        return None
    device_id = topic[len(prefix) : -len(suffix)]
    return device_id if 0 < len(device_id) <= 200 and "/" not in device_id else None


def user_property(properties: Properties | None, name: str) -> str | None:
    for key, value in getattr(properties, "UserProperty", None) or []:
        if str(key).lower() == name:
            return str(value)
    return None


def properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def check_size(payload: bytes | bytearray) -> None:
    """Refuse a payload too large to decode (checked before anything else)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Refused("too_large", f"payload over {MAX_PAYLOAD_BYTES} bytes")


def bearer_key(authorization: str | None) -> str:
    """The API key of an ``authorization`` user property (``Bearer <key>``)."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Refused("unauthorized", f"send user property {AUTH_PROPERTY!r} = 'Bearer <API key>'")
    return key.strip()


def decode_readings(payload: bytes | bytearray, *, max_items: int) -> list[Any]:
    """One reading (a JSON object) or a list of them, each still to be validated."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise Refused("malformed", f"payload is not valid JSON: {exc}") from exc
    items = doc if isinstance(doc, list) else [doc] if isinstance(doc, dict) else None
    if items is None:
        raise Refused("malformed", "send one reading (a JSON object) or a list of them")
    if len(items) > max_items:
        raise Refused("too_many", f"at most {max_items} readings per message")
    return items


def ingest_client(
    client_id: str, *, username: str | None = None, password: str | None = None
) -> mqtt.Client:
    """An MQTT v5 client that acknowledges a message only when told (``client.ack``)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,  # PUBACK only after the commit
    )
    if username is not None:
        client.username_pw_set(username, password)
    client.reconnect_delay_set(1, 30)
    return client
