"""MQTT ingest: loggers publish readings to a broker; ``v2v mqtt`` stores them.

Topic ``v2v/devices/{device_id}/readings``, payload one reading (a JSON object) or a list of
them, as in ``POST /readings``. The publisher authenticates with an API key in the MQTT v5
user property ``authorization`` (``Bearer <key>``): the device's own key, a courier key of
the organisation owning the device, or an admin key. Each message's outcome is published
(QoS 1) on ``v2v/devices/{device_id}/acks``.
"""

from integrations.mqtt.worker import (
    AUTH_PROPERTY,
    MAX_PAYLOAD_BYTES,
    SESSION_EXPIRY_S,
    MqttWorker,
    acks_topic,
    readings_filter,
)

__all__ = [
    "AUTH_PROPERTY",
    "MAX_PAYLOAD_BYTES",
    "SESSION_EXPIRY_S",
    "MqttWorker",
    "acks_topic",
    "readings_filter",
]
