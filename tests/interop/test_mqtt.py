"""MQTT ingest against the real Mosquitto on 127.0.0.1:1883: keys, acks, resends, bad payloads.

Each test uses its own topic root (``v2v-test-<uuid>/devices/…``), so parallel workers and the
two database lanes never see each other's messages; the ingest worker runs on paho's
background thread against the test's database and frozen clock.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.services.coldchain import ingest as ingest_service
from app.telemetry import REGISTRY
from app.workers.mqtt import MqttWorker
from integrations import mqtt as mqtt_protocol
from integrations.mqtt import MAX_PAYLOAD_BYTES
from models.principal import Role
from tests.coldchain.test_readings import MIN, in_transit, readings
from tests.conftest import IN_CI, Api

BROKER = ("127.0.0.1", 1883)
WAIT_S = 5.0


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"Mosquitto is required under CI and unreachable at {BROKER}: {exc}")
        pytest.skip(f"no MQTT broker at {BROKER} ({exc}); start it: mosquitto -d")
    return BROKER


class Logger:
    """A data logger's MQTT client: publishes readings and waits for the outcome on the acks."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.acks: queue.Queue[tuple[str, bytes | None, dict[str, Any]]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-logger-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.acks.put(
            (m.topic, getattr(m.properties, "CorrelationData", None), json.loads(m.payload))
        )
        self.client.connect(*BROKER, clean_start=True)
        self.client.loop_start()
        self.client.subscribe(f"{root}/devices/+/acks", qos=1)
        assert subscribed.wait(WAIT_S), "the acks subscription was not granted"

    def publish(self, device: str, payload: Any, key: str | None, *, raw: bool = False) -> bytes:
        """Publish (QoS 1) on the device's readings topic; returns the correlation data."""
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        if key is not None:
            props.UserProperty = ("authorization", key if raw else f"Bearer {key}")
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        topic = f"{self.root}/devices/{device}/readings"
        self.client.publish(topic, body, qos=1, properties=props).wait_for_publish(WAIT_S)
        return correlation

    def ack(self, device: str, correlation: bytes) -> dict[str, Any]:
        """The ack for one message, waited for with a deadline."""
        deadline = time.monotonic() + WAIT_S
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                topic, got, body = self.acks.get(timeout=remaining)
            except queue.Empty:
                break
            if got == correlation:
                assert topic == f"{self.root}/devices/{device}/acks"
                return body
        pytest.fail(f"no ack for {device} within {WAIT_S} s")

    def send(self, device: str, payload: Any, key: str | None, *, raw: bool = False) -> Any:
        return self.ack(device, self.publish(device, payload, key, raw=raw))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Rig:
    """Ingest workers and a logger sharing a topic root of their own."""

    def __init__(self, database: Database, settings: Settings, clock: FrozenClock) -> None:
        self.root = f"v2v-test-{uuid.uuid4().hex[:12]}"
        self.client_id = f"test-ingest-{uuid.uuid4().hex[:12]}"
        self._database, self._settings, self._clock = database, settings, clock
        self.workers: list[MqttWorker] = []
        self.logger = Logger(self.root)

    def start_worker(self, **options: Any) -> MqttWorker:
        worker = MqttWorker(
            self._database,
            clock=self._clock,
            secret_key=self._settings.secret_key.get_secret_value(),
            host=BROKER[0],
            port=BROKER[1],
            client_id=self.client_id,
            root=self.root,
            session_expiry_s=30,  # long enough for a restart, short enough to leave no litter
            retry_s=0.01,
            **options,
        )
        self.workers.append(worker)
        worker.start()
        assert worker.subscribed.wait(WAIT_S), "the ingest worker did not subscribe"
        return worker

    def close(self) -> None:
        self.logger.close()
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def rig(
    broker: tuple[str, int], api: Api, database: Database, settings: Settings, clock: FrozenClock
) -> Iterator[Rig]:
    rig = Rig(database, settings, clock)
    try:
        yield rig
    finally:
        rig.close()


def stored(database: Database, device: str) -> int:
    with database.engine.connect() as conn:
        sql = text("SELECT count(*) FROM reading WHERE device_id = :d")
        return int(conn.execute(sql, {"d": device}).scalar_one())


def ingested_total() -> float:
    return REGISTRY.get_sample_value("v2v_readings_ingested_total") or 0.0


def test_a_device_key_stores_one_reading_then_a_list(
    rig: Rig, api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=device)
    rig.start_worker()
    before = ingested_total()
    one = {"ts": t0.isoformat(), "temp_c": 5.0}  # device_id taken from the topic
    assert rig.logger.send(device, one, key) == {
        "status": "ok",
        "accepted": 1,
        "duplicates": 0,
        "rejected": [],
    }
    batch = readings(device, t0 + 10 * MIN, [5.5, 6.0, 6.5])
    del batch[0]["device_id"]
    ack = rig.logger.send(device, batch, key)
    assert (ack["status"], ack["accepted"], ack["rejected"]) == ("ok", 3, [])
    assert stored(database, device) == 4
    assert ingested_total() - before == 4
    summary = api.get("courier", f"/api/v1/shipments/{ship['id']}").json()
    assert summary["last_reading"]["temp_c"] == 6.5


def test_a_device_publishes_only_for_itself(rig: Rig, api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api, "MRN-M1")
    _, other, _ = in_transit(api, "MRN-M2")
    mine, theirs = ship["device_ids"][0], other["device_ids"][0]
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=mine)
    rig.start_worker()
    ack = rig.logger.send(theirs, readings(theirs, t0, [5.0]), key)
    assert (ack["status"], ack["code"]) == ("refused", "forbidden")
    # On its own topic, a reading naming another device is rejected alone.
    ack = rig.logger.send(mine, readings(theirs, t0, [5.0]) + readings(mine, t0, [5.0]), key)
    assert ack["accepted"] == 1 and ack["rejected"][0]["index"] == 0
    assert "topic's device" in ack["rejected"][0]["reason"]
    # Courier keys: only for the organisation's own loggers.
    assert rig.logger.send(theirs, readings(theirs, t0, [5.0]), api.keys["global"])["code"] == (
        "forbidden"
    )
    assert (
        rig.logger.send(theirs, readings(theirs, t0, [5.0]), api.keys["courier"])["accepted"] == 1
    )
    assert (stored(database, mine), stored(database, theirs)) == (1, 1)


def test_missing_or_invalid_keys_are_refused(
    rig: Rig, api: Api, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    rig.start_worker()
    item = readings(device, t0, [5.0])
    for key, raw, code in (
        (None, False, "unauthorized"),
        ("v2v_0000_not-a-real-key", False, "unauthorized"),
        (api.keys["courier"], True, "unauthorized"),  # no "Bearer " scheme
        (api.keys["ncc"], False, "forbidden"),  # a coordinator is no publisher
    ):
        ack = rig.logger.send(device, item, key, raw=raw)
        assert (ack["status"], ack["code"]) == ("refused", code)
        assert key is None or key not in json.dumps(ack)
    assert stored(database, device) == 0
    refusals = [
        r.getMessage()
        for r in caplog.records
        if r.name == "v2v.mqtt" and r.levelno >= logging.WARNING
    ]
    assert len(refusals) == 4  # each refusal is logged, never with the key
    secrets = [*api.keys.values(), "v2v_0000_not-a-real-key"]
    assert not [m for m in refusals for k in secrets if k.split("_", 2)[2] in m]


def test_bad_payloads_get_an_error_ack_and_the_worker_keeps_going(
    rig: Rig, api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=device)
    rig.start_worker()
    for payload, code in (
        (b"{not json", "malformed"),
        (b"\xff\xfe\x00", "malformed"),
        (b"42", "malformed"),
        (b"[" * 100_000, "malformed"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "too_large"),
        (json.dumps([{}] * 10_001).encode(), "too_many"),
    ):
        ack = rig.logger.send(device, payload, key)
        assert (ack["status"], ack["code"]) == ("refused", code)
    ack = rig.logger.send(device, [{"ts": t0.isoformat(), "temp_c": "cold"}], key)
    assert ack["accepted"] == 0 and "temp_c" in ack["rejected"][0]["reason"]
    assert rig.logger.send(device, readings(device, t0, [5.0]), key)["accepted"] == 1
    assert stored(database, device) == 1


def test_a_resent_message_counts_as_duplicates(rig: Rig, api: Api, database: Database) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=device)
    rig.start_worker()
    batch = readings(device, t0, [5.0, 5.1, 5.2])
    assert rig.logger.send(device, batch, key)["accepted"] == 3
    again = rig.logger.send(device, batch, key)
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert stored(database, device) == 3


def test_messages_published_while_the_worker_is_down_are_stored_when_it_returns(
    rig: Rig, api: Api, database: Database
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=device)
    rig.start_worker().stop()  # the broker now holds a persistent session for this client id
    correlation = rig.logger.publish(device, readings(device, t0, [5.0, 5.1]), key)
    rig.start_worker()
    assert rig.logger.ack(device, correlation)["accepted"] == 2
    assert stored(database, device) == 2


def test_a_message_is_acknowledged_only_after_its_commit(
    rig: Rig, api: Api, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ship, t0 = in_transit(api)
    device = ship["device_ids"][0]
    key = api.key("logger", Role.device, courier="KASHIWA-COLD", device_id=device)
    real_ingest = ingest_service.ingest
    failing = [1]  # how many calls fail next

    def flaky(*args: Any, **kwargs: Any) -> ingest_service.IngestResult:
        if failing[0]:
            failing[0] -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(ingest_service, "ingest", flaky)
    # A transient failure is retried in place: the first attempt fails, the second stores.
    rig.start_worker(attempts=2)
    assert rig.logger.send(device, readings(device, t0, [5.0]), key)["accepted"] == 1
    # Out of attempts: an error ack, no PUBACK; the next session gets the message again.
    failing[0] = 1
    rig.workers[-1].stop()
    rig.start_worker(attempts=1)
    correlation = rig.logger.publish(device, readings(device, t0 + 10 * MIN, [5.1]), key)
    assert rig.logger.ack(device, correlation)["status"] == "error"
    assert stored(database, device) == 1
    rig.workers[-1].stop()
    rig.start_worker()
    assert rig.logger.ack(device, correlation)["accepted"] == 1
    assert stored(database, device) == 2


def test_topics_keys_and_payloads_are_read_without_a_broker() -> None:
    assert mqtt_protocol.readings_filter("r") == "r/devices/+/readings"
    assert mqtt_protocol.readings_filter("r", "g") == "$share/g/r/devices/+/readings"
    with pytest.raises(ValueError, match="may not contain"):
        mqtt_protocol.readings_filter("r", "a/b")
    assert mqtt_protocol.device_of("r/devices/LOG-1/readings", "r") == "LOG-1"
    for topic in ("r/devices//readings", "r/devices/a/b/readings", "x/devices/LOG-1/readings"):
        assert mqtt_protocol.device_of(topic, "r") is None
    assert mqtt_protocol.acks_topic("LOG-1", "r") == "r/devices/LOG-1/acks"
    assert mqtt_protocol.bearer_key("Bearer  k1 ") == "k1"
    assert mqtt_protocol.decode_readings(b'{"temp_c": 5}', max_items=2) == [{"temp_c": 5}]
    refusals = [
        (lambda: mqtt_protocol.bearer_key(None), "unauthorized"),
        (lambda: mqtt_protocol.bearer_key("Basic k1"), "unauthorized"),
        (lambda: mqtt_protocol.check_size(b"x" * (MAX_PAYLOAD_BYTES + 1)), "too_large"),
        (lambda: mqtt_protocol.decode_readings(b"{", max_items=2), "malformed"),
        (lambda: mqtt_protocol.decode_readings(b"5", max_items=2), "malformed"),
        (lambda: mqtt_protocol.decode_readings(b"[{}, {}, {}]", max_items=2), "too_many"),
    ]
    for call, code in refusals:
        with pytest.raises(mqtt_protocol.Refused) as refused:
            call()
        assert refused.value.code == code
