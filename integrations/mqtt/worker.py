"""The MQTT ingest worker: readings published by loggers go through the HTTP ingest service.

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
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlmodel import Session

from app.clock import Clock
from app.db import Database
from app.services.access import principals
from app.services.coldchain import ingest as readings
from models.coldchain import Device
from models.principal import Principal, Role

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger("v2v.mqtt")

DEFAULT_ROOT = "v2v"
AUTH_PROPERTY = "authorization"
MAX_PAYLOAD_BYTES = 1024 * 1024
# How long the broker keeps our subscription and queues messages while no worker is up.
SESSION_EXPIRY_S = 7 * 24 * 3600
QOS = 1


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


class Refused(Exception):
    """The whole message is refused; ``code`` and ``reason`` go back on the acks topic."""

    def __init__(self, code: str, reason: str, *, who: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason, self.who = code, reason, who  # who: logged, not published


def _device_of(topic: str, root: str) -> str | None:
    prefix, suffix = f"{root}/devices/", "/readings"
    if not topic.startswith(prefix) or not topic.endswith(suffix):
        return None
    device_id = topic[len(prefix) : -len(suffix)]
    return device_id if 0 < len(device_id) <= 200 and "/" not in device_id else None


def _user_property(properties: Properties | None, name: str) -> str | None:
    for key, value in getattr(properties, "UserProperty", None) or []:
        if str(key).lower() == name:
            return str(value)
    return None


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _may_publish(session: Session, principal: Principal, device_id: str) -> bool:
    if principal.role == Role.device:
        return principal.device_id == device_id
    if principal.role == Role.courier:
        device = session.get(Device, device_id)
        return device is not None and device.courier == principal.courier
    return principal.role == Role.admin


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
        self._root = root
        self._session_expiry_s = session_expiry_s
        self._attempts, self._retry_s = max(1, attempts), retry_s
        self.client_id = client_id
        self.subscription = readings_filter(root, shared_group)
        self.subscribed = threading.Event()  # set once the broker granted the subscription
        self._stopping = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,  # PUBACK only after the commit
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 30)
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
        )

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start consuming."""
        props = _properties(PacketTypes.CONNECT)
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
        device_id = _device_of(message.topic, self._root)
        if device_id is None:  # nowhere to answer; acknowledged so it is not redelivered
            log.warning("mqtt: ignored a message on unexpected topic %r", message.topic)
            client.ack(message.mid, message.qos)
            return
        authorization = _user_property(message.properties, AUTH_PROPERTY)
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
        props = _properties(PacketTypes.PUBLISH)
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
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise Refused("too_large", f"payload over {MAX_PAYLOAD_BYTES} bytes")
            principal = self._authenticate(device_id, authorization, now)
            items = self._items(payload)
        except Refused as refused:
            log.warning(
                "mqtt: refused a message for device %s: %s (%s)%s",
                device_id,
                refused.code,
                refused.reason,
                f" from principal {refused.who}" if refused.who else "",
            )
            return {"status": "refused", "code": refused.code, "reason": refused.reason}
        return self._ingest(device_id, principal, items, now)

    def _authenticate(self, device_id: str, authorization: str | None, now: datetime) -> Principal:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Refused(
                "unauthorized", f"send user property {AUTH_PROPERTY!r} = 'Bearer <API key>'"
            )
        with self._db.session() as session:
            principal = principals.authenticate(
                session, api_key=key.strip(), secret_key=self._secret_key, now=now
            )
            if principal is None:
                raise Refused("unauthorized", "invalid or revoked API key")
            if not _may_publish(session, principal, device_id):
                raise Refused(
                    "forbidden",
                    f"this key may not publish for device {device_id!r}",
                    who=f"{principal.id} ({principal.role})",
                )
        return principal

    @staticmethod
    def _items(payload: bytes | bytearray) -> list[Any]:
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise Refused("malformed", f"payload is not valid JSON: {exc}") from exc
        items = doc if isinstance(doc, list) else [doc] if isinstance(doc, dict) else None
        if items is None:
            raise Refused("malformed", "send one reading (a JSON object) or a list of them")
        if len(items) > readings.MAX_BATCH:
            raise Refused("too_many", f"at most {readings.MAX_BATCH} readings per message")
        return items

    def _ingest(
        self, device_id: str, principal: Principal, items: list[Any], now: datetime
    ) -> dict[str, Any]:
        passed: list[Any] = []
        origin: list[int] = []  # index in the message of each item passed to ingest
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("device_id") is None:
                item = {**item, "device_id": device_id}
            elif isinstance(item, dict) and item["device_id"] != device_id:
                rejected.append({"index": index, "reason": "device_id is not the topic's device"})
                continue
            passed.append(item)
            origin.append(index)
        with readings.transaction(self._db) as session:
            result = readings.ingest(
                session,
                actor=principal,
                items=passed,
                now=now,
                future_tolerance_s=self._future_tolerance_s,
            )
        rejected += [{**r, "index": origin[r["index"]]} for r in result.rejected]
        return {
            "status": "ok",
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": sorted(rejected, key=lambda r: int(r["index"])),
        }
