"""The MQTT ingest worker, an adapter: readings published by loggers go through the ingest
use case (``app.services.interop.mqtt``); topics, payloads and the client are
``integrations.mqtt``.

Delivery is at-least-once end to end. The worker subscribes with QoS 1 in a persistent
session (``clean_start=False``, a stable client id, a session expiry), and acknowledges a
message (PUBACK, paho's ``manual_ack``) only after its readings are committed and its
outcome is published. A crash in between makes the broker redeliver the message; a
redelivered reading is counted as a duplicate, because ``(device_id, ts)`` is unique.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

from app.clock import Clock
from app.db import Database
from app.errors import AppError
from app.services.coldchain import ingest as readings
from app.services.coldchain import rides, writer
from app.services.interop import mqtt as mqtt_ingest
from integrations.mqtt import (
    AUTH_PROPERTY,
    DEFAULT_ROOT,
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
from models.principal import Principal

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger("v2v.mqtt")


class MqttWorker:
    """Subscribes to every device's readings topic and feeds the ingest service."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        secret_key: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str = "v2v-ingest-1",
        shared_group: str = "",
        username: str | None = None,
        password: str | None = None,
        future_tolerance_s: int = 300,
        bounds: rides.LateBounds = rides.DEFAULT_BOUNDS,
        root: str = DEFAULT_ROOT,
        session_expiry_s: int = SESSION_EXPIRY_S,
        keepalive_s: int = 30,
        attempts: int = 5,
        retry_s: float = 0.5,
    ) -> None:
        self._db = db
        self._clock = clock
        self._secret_key = secret_key
        self._host, self._port, self._keepalive_s = host, port, keepalive_s
        self._future_tolerance_s = future_tolerance_s
        self._bounds = bounds
        self._root = root
        self._session_expiry_s = session_expiry_s
        self._attempts, self._retry_s = max(1, attempts), retry_s
        self.client_id = client_id
        self.subscription = readings_filter(root, shared_group)
        self.subscribed = threading.Event()  # set once the broker granted the subscription
        self._stopping = threading.Event()
        self._client = ingest_client(client_id, username=username, password=password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @classmethod
    def from_settings(
        cls,
        db: Database,
        settings: Settings,
        *,
        clock: Clock,
        client_id: str | None = None,
        shared_group: str | None = None,
    ) -> MqttWorker:
        return cls(
            db,
            clock=clock,
            secret_key=settings.secret_key.get_secret_value(),
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            client_id=client_id or settings.mqtt_client_id,
            shared_group=settings.mqtt_shared_group if shared_group is None else shared_group,
            username=settings.mqtt_username.get_secret_value() if settings.mqtt_username else None,
            password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
            future_tolerance_s=settings.future_tolerance_s,
            bounds=rides.LateBounds.of(settings),
        )

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start consuming."""
        props = properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        self._client.connect_async(
            self._host, self._port, self._keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect; the broker keeps the session, so nothing published meanwhile is lost."""
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()

    # paho callbacks, all on the network thread: one message at a time, in order.

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("mqtt: %s:%s refused the connection: %s", self._host, self._port, rc)
            return
        log.info(
            "mqtt: connected as %s (session present: %s)", self.client_id, flags.session_present
        )
        client.subscribe(self.subscription, qos=QOS)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if any(code.is_failure for code in codes):
            log.error("mqtt: subscription to %s refused: %s", self.subscription, codes)
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("mqtt: disconnected (%s); reconnecting", rc)

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._deliver(client, message)
        except Exception:  # a bug must not stop the network loop; the message stays unacked
            log.exception("mqtt: unexpected error on %s", message.topic)

    def _deliver(self, client: mqtt.Client, message: mqtt.MQTTMessage) -> None:
        device_id = device_of(message.topic, self._root)
        if device_id is None:  # nowhere to answer; acknowledged so it is not redelivered
            log.warning("mqtt: ignored a message on unexpected topic %r", message.topic)
            client.ack(message.mid, message.qos)
            return
        authorization = user_property(message.properties, AUTH_PROPERTY)
        for attempt in range(1, self._attempts + 1):
            try:
                outcome = self.handle(device_id, message.payload, authorization)
                break
            except Exception:
                log.exception("mqtt: ingest failed for %s (attempt %d)", device_id, attempt)
                if attempt == self._attempts or self._stopping.wait(self._retry_s * 2**attempt):
                    # Not acknowledged: the broker redelivers it when the session resumes.
                    self._publish(
                        client,
                        message,
                        device_id,
                        {
                            "status": "error",
                            "reason": "internal error; the message will be redelivered",
                        },
                    )
                    return
        self._publish(client, message, device_id, outcome)
        client.ack(message.mid, message.qos)

    def _publish(
        self, client: mqtt.Client, message: mqtt.MQTTMessage, device_id: str, body: Any
    ) -> None:
        props = properties(PacketTypes.PUBLISH)
        correlation = getattr(message.properties, "CorrelationData", None)
        if correlation is not None:  # lets a logger match the outcome to what it sent
            props.CorrelationData = correlation
        client.publish(
            acks_topic(device_id, self._root), json.dumps(body), qos=QOS, properties=props
        )

    def handle(
        self, device_id: str, payload: bytes | bytearray, authorization: str | None
    ) -> dict[str, Any]:
        """The outcome of one message, committed; raises only on an internal error."""
        try:
            now = self._clock()
            check_size(payload)
            principal = self._authenticate(device_id, authorization, now)
            items = decode_readings(payload, max_items=readings.MAX_BATCH)
        except Refused as refused:
            log.warning(
                "mqtt: refused a message for device %s: %s (%s)%s",
                device_id,
                refused.code,
                refused.reason,
                f" from principal {refused.who}" if refused.who else "",
            )
            return {"status": "refused", "code": refused.code, "reason": refused.reason}
        return writer.run(
            self._db,
            partial(
                mqtt_ingest.ingest_message,
                actor=principal,
                device_id=device_id,
                items=items,
                now=now,
                future_tolerance_s=self._future_tolerance_s,
                bounds=self._bounds,
            ),
            size=len(items),
        )

    def _authenticate(self, device_id: str, authorization: str | None, now: datetime) -> Principal:
        key = bearer_key(authorization)
        try:
            with self._db.session() as session:
                return mqtt_ingest.authorise_publisher(
                    session,
                    api_key=key,
                    secret_key=self._secret_key,
                    device_id=device_id,
                    now=now,
                )
        except AppError as exc:  # Unauthorized or Forbidden
            raise Refused(exc.code, exc.detail, who=exc.extra.get("principal", "")) from None
