"""The daily digest: in the person's language and zone, within their scope, once a day."""

from __future__ import annotations

from datetime import timedelta

from app.config import Settings
from app.db import Database
from app.jobs import sweeps
from tests.conftest import NOW, Api
from tests.helpers import Journey
from tests.notifications.conftest import PUBLIC_URL, Mailbox
from tests.notifications.flows import assert_clean, email_of, run, subscribe


def test_the_digest_in_japanese_with_jst_times(
    api: Api, database: Database, settings: Settings, mailbox: Mailbox
) -> None:
    subscribe(api, "ncc", kinds=["coi_mismatch"], min_severity="critical", digest=True)
    subscribe(api, "utokyo", kinds=["coi_mismatch"], digest=True, language="en")
    # Apheresis today at 12:30 Tokyo time (03:30 UTC).
    booked = Journey(api, patient="MRN-0001", start=NOW + timedelta(hours=3, minutes=30))
    booked.schedule()
    # A product on hold, and a shipment waiting for its courier.
    held = Journey(api, patient="MRN-0002")
    held.schedule()
    held.step("collected")
    held.ship("to_manufacturing", "FRESH_2_8")
    hold = api.post(
        "qa",
        f"/api/v1/cases/{held.case['id']}/hold",
        {
            "action": "place",
            "reason": "under investigation",
            "signature": {"password_or_key": api.keys["qa"], "meaning": "approval"},
        },
    )
    assert hold.status_code == 200, hold.text
    # Another hospital's case, silent in transit: it must not appear in NCC's digest.
    tokyo = Journey(api, route="TOKYO-KASHIWA", patient="MRN-0003")
    tokyo.schedule()
    tokyo.step("collected")
    tokyo.custody(tokyo.ship("to_manufacturing", "FRESH_2_8"), "picked_up")
    assert sweeps.loss_of_signal(database, now=NOW) == 1

    # 06:59 in Tokyo: not yet; 09:00 (NOW): queued once, for the day.
    assert run(settings, database, "digests", NOW - timedelta(hours=2, minutes=1)) == 0
    assert run(settings, database, "digests", NOW) == 2
    assert run(settings, database, "digests", NOW + timedelta(hours=3)) == 0
    assert run(settings, database, "notifications", NOW) == 2
    [mail] = mailbox.to(email_of("ncc"))
    assert mail.subject == "[vein2vein] vein2vein 本日のまとめ 2026-11-26"
    assert "本日の作業" in mail.body
    assert (
        f"- 12:30 JST アフェレーシス · {booked.coi} · {PUBLIC_URL}/cases/{booked.case['id']}"
        in (mail.body)
    )
    assert f"集荷待ち · {held.coi}" in mail.body
    assert f"保留中の製品（投与禁止） (1)\n- {held.coi}" in mail.body
    assert "未対応のアラート (0)" in mail.body
    assert_clean(mail, foreign=[tokyo.coi, tokyo.case["id"], "UTOKYO"])
    # Tokyo's coordinator reads English, its own case and alert only.
    [other] = mailbox.to(email_of("utokyo"))
    assert other.subject == "[vein2vein] vein2vein daily digest 2026-11-26"
    assert "Open alerts (1)" in other.body and "no reading from shipment" in other.body
    assert f"Arrival expected · {tokyo.coi}" in other.body
    assert_clean(other, foreign=[booked.coi, held.coi, "NCC"])
    # Tomorrow's, from 07:00 JST (22:00 UTC).
    assert run(settings, database, "digests", NOW + timedelta(hours=21, minutes=59)) == 0
    assert run(settings, database, "digests", NOW + timedelta(hours=22)) == 2
