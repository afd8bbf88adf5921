"""Issue #12 small items: the overview's in-transit ETA is the predicted arrival (not "now"
when the box is late), and English pages name sites rather than print their codes."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from app.db import Database
from app.services.delays import routes
from app.web.i18n import Lang
from models.shipment import Shipment
from tests.conftest import NOW, Api
from tests.web.test_dashboard import (  # noqa: F401  (the fixtures)
    Browser,
    db_url,
    world,
    world_seed,
)


def test_a_late_shipment_shows_its_predicted_arrival_marked_late(
    api: Api,
    database: Database,
    world: dict[str, Any],  # noqa: F811
) -> None:
    # world's shipment was picked up about 40 days before NOW: it should long have arrived.
    with database.session() as session:
        shipment = session.get(Shipment, world["shipment_id"])
        assert shipment is not None
        model = routes.load_models(session)["KASHIWA-LOCAL"]
        predicted = routes.predicted_arrival(session, shipment=shipment, model=model)
    assert predicted is not None and predicted < NOW
    page = Browser(api, "ncc", **{"Accept-Language": "en"}).get("/?part=shipments").text
    row = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*{world['shipment_id'][:8]}.*?</tr>", page, re.S)
    assert row, page[:2000]
    cell = re.search(r'<td class="eta"><time datetime="([^"]+)">([^<]+)</time>(.*?)</td>', row[0])
    assert cell, row[0]
    tokyo = Lang("en", ZoneInfo("Asia/Tokyo"))  # NCC East's zone, the page's
    assert cell[1] == tokyo.iso(predicted) and cell[2] == tokyo.dt(predicted)
    assert cell[2] != tokyo.dt(NOW)
    assert 'data-late="true">Late<' in cell[3]


def test_english_pages_name_sites_instead_of_printing_codes(
    api: Api,
    world: dict[str, Any],  # noqa: F811
) -> None:
    en = Browser(api, "ncc", **{"Accept-Language": "en"})
    shipment = en.get(f"/shipments/{world['shipment_id']}").text
    assert "National Cancer Center Hospital East →" in shipment
    assert "NCC-EAST →" not in shipment
    case = en.get(f"/cases/{world['case_id']}").text
    assert "National Cancer Center Hospital East →" in case and "NCC-EAST →" not in case
    routes_page = Browser(api, "ncc", **{"Accept-Language": "en"}).get("/routes").text
    assert not re.search(r'<span class="muted">[A-Z0-9-]+</span></th>', routes_page)
