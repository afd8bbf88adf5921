"""MQTT ingest: loggers publish readings to a broker; ``v2v mqtt`` stores them.

Topic ``v2v/devices/{device_id}/readings``, payload one reading (a JSON object) or a list of
them, as in ``POST /readings``. The publisher authenticates with an API key in the MQTT v5
user property ``authorization`` (``Bearer <key>``): the device's own key, a courier key of
the organisation owning the device, or an admin key. Each message's outcome is published
(QoS 1) on ``v2v/devices/{device_id}/acks``.

This package is the protocol only (topics, payloads, the client); the worker that stores
what arrives is ``app.workers.mqtt``.
"""

from integrations.mqtt._protocol import (
    AUTH_PROPERTY,
    DEFAULT_ROOT,
    MAX_PAYLOAD_BYTES,
    QOS,
    SESSION_EXPIRY_S,
    Refused,
    acks_topic,
    bearer_key,
    check_size,
    decode_readings,
    device_of,
    ingest_client,
    properties,
    readings_filter,
    user_property,
)

__all__ = [
    "AUTH_PROPERTY",
    "DEFAULT_ROOT",
    "MAX_PAYLOAD_BYTES",
    "QOS",
    "SESSION_EXPIRY_S",
    "Refused",
    "acks_topic",
    "bearer_key",
    "check_size",
    "decode_readings",
    "device_of",
    "ingest_client",
    "properties",
    "readings_filter",
    "user_property",
]
