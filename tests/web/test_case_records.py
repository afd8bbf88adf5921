"""The case page's records on both databases: the hold banner wherever the case shows, signed
corrections and holds through the web forms (the API's use cases), alerts in the reader's
language and zone."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.jobs.delays import delay_sweep
from tests.coldchain.test_readings import in_transit, post, readings
from tests.conftest import NOW, Api
from tests.web.test_dashboard import Browser

HOLD = "Do not infuse — product on hold"


@pytest.fixture
def moving(api: Api) -> dict[str, Any]:
    """An NCC East case whose fresh material is on the road, with a warm spell."""
    j, shipment, t0 = in_transit(api, patient="MRN-REC-1")
    post(api, "courier", readings(shipment["device_ids"][0], t0, [5.0, 12.5, 13.0, 12.0, 5.1]))
    milestones = api.get("ncc", f"/api/v1/cases/{j.case['id']}").json()["milestones"]
    collected = next(m for m in milestones if m["type"] == "collected")
    return {
        "case_id": j.case["id"],
        "coi": j.coi,
        "shipment_id": shipment["id"],
        "collected_id": collected["id"],
    }


def place_hold(api: Api, case_id: str, reason: str) -> None:
    body = {
        "action": "place",
        "reason": reason,
        "signature": {"password_or_key": api.keys["qa"], "meaning": "Approval"},
    }
    r = api.post("qa", f"/api/v1/cases/{case_id}/hold", body)
    assert r.status_code == 200, r.text


def case_of(api: Api, case_id: str) -> dict[str, Any]:
    r = api.get("admin", f"/api/v1/cases/{case_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_hold_placed_through_the_api_shows_on_case_shipment_and_overview(
    api: Api, moving: dict[str, Any]
) -> None:
    ncc = Browser(api, "ncc")
    assert HOLD not in ncc.get(f"/cases/{moving['case_id']}").text
    place_hold(api, moving["case_id"], "Seal broken on arrival photo")
    case = ncc.get(f"/cases/{moving['case_id']}").text
    banner = case.split('id="hold-banner"', 1)[1].split("</section>", 1)[0]
    assert HOLD in banner and "Seal broken on arrival photo" in banner and "qa" in banner
    assert case.index('id="hold-banner"') < case.index("<h1>")  # at the top
    assert "Nov" in banner or "2026" in banner  # since when
    shipment = ncc.get(f"/shipments/{moving['shipment_id']}").text
    assert 'id="hold-banner"' in shipment and "Seal broken on arrival photo" in shipment
    overview = ncc.get("/?part=shipments").text
    assert 'data-hold="on_hold"' in overview
    worklist = ncc.get("/cases", params={"q": moving["coi"]}).text
    assert 'class="on-hold"' in worklist and "On hold" in worklist
    # The Japanese page says it in Japanese.
    ja = Browser(api, "ncc", **{"Accept-Language": "ja"}).get(f"/cases/{moving['case_id']}")
    assert "投与禁止 — 製品は保留中です" in ja.text


def test_qa_places_and_releases_a_hold_with_their_own_key_only(
    api: Api, moving: dict[str, Any]
) -> None:
    url = f"/cases/{moving['case_id']}/hold"
    page = f"/cases/{moving['case_id']}"
    form = {"action": "place", "reason": "Awaiting sterility retest", "meaning": "approval"}
    qa = Browser(api, "qa")
    r = qa.post(url, {**form, "signature_key": api.keys["admin"]}, page=page)
    assert r.status_code == 303 and r.headers["location"] == f"{page}#hold"
    refused = qa.get(page).text
    assert "Not signed: the signature credential is not the signer&#39;s own key" in refused
    assert 'id="hold-banner"' not in refused
    assert case_of(api, moving["case_id"])["hold"] is None
    qa.post(url, {**form, "reason": " ", "signature_key": api.keys["qa"]}, page=page)
    assert "Not signed: give a reason and your key." in qa.get(page).text
    assert case_of(api, moving["case_id"])["hold"] is None
    qa.post(url, {**form, "signature_key": api.keys["qa"]}, page=page)
    placed = qa.get(page).text
    assert "Product placed on hold." in placed and 'id="hold-banner"' in placed
    hold = case_of(api, moving["case_id"])["hold"]
    assert hold["status"] == "on_hold" and hold["reason"] == "Awaiting sterility retest"
    assert api.keys["qa"] not in placed
    # A coordinator sees the banner, not the form; a forged post changes nothing.
    ncc = Browser(api, "ncc")
    assert 'action="' + url + '"' not in ncc.get(page).text
    ncc.post(url, {**form, "action": "release", "signature_key": api.keys["ncc"]}, page=page)
    assert "Not signed: role coordinator may not" in ncc.get(page).text
    assert case_of(api, moving["case_id"])["hold"]["status"] == "on_hold"
    release = {**form, "action": "release", "reason": "Retest negative"}
    qa.post(url, {**release, "signature_key": api.keys["qa"]}, page=page)
    released = qa.get(page).text
    assert "Hold released." in released and 'id="hold-banner"' not in released
    assert case_of(api, moving["case_id"])["hold"]["status"] == "released"


def test_a_correction_through_the_form_keeps_the_earlier_value(
    api: Api, moving: dict[str, Any]
) -> None:
    page = f"/cases/{moving['case_id']}"
    url = f"{page}/milestones/{moving['collected_id']}/correction"
    # Collection bears the COI: QA or an admin corrects it, so a coordinator gets no form.
    ncc = Browser(api, "ncc")
    assert 'action="' + url + '"' not in ncc.get(page).text
    qa = Browser(api, "qa")
    text = qa.get(page).text
    assert f'id="milestone-{moving["collected_id"]}"' in text and 'action="' + url + '"' in text
    was = re.search(r'name="occurred_was" value="([^"]+)"', text)
    assert was is not None
    old = was.group(1)  # shown in the page's zone (Asia/Tokyo for NCC East)
    new = (datetime.fromisoformat(old) - timedelta(hours=1)).isoformat()
    form = {
        "action": "amend",
        "occurred_at": new,
        "occurred_was": old,
        "zone": "Asia/Tokyo",
        "note": "",
        "reason": "Clock on the apheresis machine was an hour fast",
        "meaning": "authorship",
    }
    # A wrong signature: a visible error next to the milestone, nothing changed.
    r = qa.post(url, {**form, "signature_key": api.keys["ncc"]}, page=page)
    assert r.headers["location"] == f"{page}#milestone-{moving['collected_id']}"
    refused = qa.get(page).text
    entry = refused.split(f'id="milestone-{moving["collected_id"]}"', 1)[1].split("</li>", 1)[0]
    assert "Not corrected: the signature credential is not the signer&#39;s own key" in entry
    assert '<details class="correct" open>' in refused
    milestone = next(
        m for m in case_of(api, moving["case_id"])["milestones"] if m["type"] == "collected"
    )
    assert milestone["status"] == "valid" and milestone["history"] is None
    # The right key: amended, with the earlier time struck through, the reason, who and when.
    qa.post(url, {**form, "signature_key": api.keys["qa"]}, page=page)
    done = qa.get(page).text
    entry = done.split(f'id="milestone-{moving["collected_id"]}"', 1)[1]
    assert "Milestone amended." in entry
    assert 'data-status="amended"' in done and "Amended" in entry
    history = entry.split('class="history"', 1)[1].split("</ul>", 1)[0]
    assert "<del>" in history and old[11:16] in history.split("</del>", 1)[0]
    assert "Clock on the apheresis machine was an hour fast" in history
    assert "amended by qa on" in history
    milestone = next(
        m for m in case_of(api, moving["case_id"])["milestones"] if m["type"] == "collected"
    )
    assert milestone["status"] == "amended" and len(milestone["history"]) == 1
    assert api.keys["qa"] not in done
    # The coordinator reads the same history on their page.
    assert "Clock on the apheresis machine was an hour fast" in ncc.get(page).text


def test_voiding_the_latest_milestone_strikes_it(api: Api) -> None:
    from tests.helpers import Journey

    j = Journey(api, patient="MRN-REC-2")
    j.schedule()
    j.step("collected", hours=2)
    collected = case_of(api, j.case["id"])["milestones"][0]
    page = f"/cases/{j.case['id']}"
    qa = Browser(api, "qa")
    form = {
        "action": "void",
        "reason": "Recorded against the wrong case",
        "meaning": "authorship",
        "signature_key": api.keys["qa"],
    }
    qa.post(f"{page}/milestones/{collected['id']}/correction", form, page=page)
    text = qa.get(page).text
    entry = text.split(f'id="milestone-{collected["id"]}"', 1)[1].split('id="records"', 1)[0]
    entry = entry.split("</ol>", 1)[0]
    assert "Milestone voided." in entry and 'record-badge-voided">Voided' in entry
    assert "<del><strong>Apheresis collected</strong>" in entry
    assert "voided by qa on" in entry and "Recorded against the wrong case" in entry
    assert "Correct this record" not in entry  # a voided record is not corrected again
    assert case_of(api, j.case["id"])["status"] == "apheresis_scheduled"


def test_alerts_are_worded_in_japanese_with_jst_times(api: Api, moving: dict[str, Any]) -> None:
    delay_sweep(api.database, now=NOW)  # receipt at the factory is long overdue
    alerts = api.get("ncc", f"/api/v1/alerts?case_id={moving['case_id']}").json()["items"]
    codes = {a["code"] for a in alerts}
    assert {"coldchain.excursion", "delay.breached"} <= codes, codes
    ja = Browser(api, "ncc", **{"Accept-Language": "ja"})
    for url in (f"/cases/{moving['case_id']}", "/alerts", "/?part=alerts"):
        text = ja.get(url).text
        messages = re.findall(r'<span class="msg">([^<]*)</span>', text)
        assert messages, url
        joined = " ".join(messages)
        assert "温度逸脱" in joined and "製造施設での受領の期限" in joined, url
        assert " JST" in joined, url  # instants in the reader's zone
        for english in ("excursion on shipment", "was due by", "has not happened", "UTC"):
            assert english not in joined, (url, english)
    english = Browser(api, "ncc").get("/alerts").text
    assert "temperature excursion on shipment" in english and "was due by" in english
    assert " JST" in english  # NCC East's coordinator reads Tokyo time in English too


def test_an_alert_without_a_code_shows_its_stored_message(api: Api, moving: dict[str, Any]) -> None:
    from sqlmodel import select

    from models.alert import Alert

    with api.database.transaction() as session:
        alert = session.exec(select(Alert).where(Alert.case_id == moving["case_id"])).first()
        assert alert is not None
        alert.code, alert.params, alert.message = None, None, "Legacy message kept as written"
        session.add(alert)
    page = Browser(api, "ncc", **{"Accept-Language": "ja"}).get(f"/cases/{moving['case_id']}")
    assert "Legacy message kept as written" in page.text
