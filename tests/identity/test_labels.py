"""The printable COI label: both symbols decode to the case's DS040 code with a real reader.

zxing-cpp reads the Code 128 and Data Matrix symbols from the PNG as served, and from the
PDF rendered to an image by PDFium; the eye-readable check character is checked against
MOD 37-2; every print is audited and numbered; no patient reference is ever on the label.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pypdfium2
import pytest
import zxingcpp
from PIL import Image

from app.services.identity.coi import check_char, parse_scan
from integrations.isbt128 import (
    LabelData,
    code128_modules,
    datamatrix_modules,
    layout,
    symbol_data,
)
from integrations.isbt128._glyphs import DOTS
from integrations.isbt128._label import NARROW_MM, QUIET_MODULES
from tests.conftest import Api
from tests.helpers import Journey, register

PATIENT = "MRN-LABEL-7731"


def decoded(image: Image.Image) -> dict[str, str]:
    """Symbology name → decoded text of every symbol zxing-cpp finds in the image."""
    return {r.format.name: r.text for r in zxingcpp.read_barcodes(image)}


def label(api: Api, persona: str, case: dict[str, Any], fmt: str) -> Any:
    return api.get(persona, f"/api/v1/cases/{case['id']}/label", params={"format": fmt})


def test_png_label_decodes_to_the_coi_in_both_symbols(api: Api) -> None:
    case = register(api, patient=PATIENT)
    r = label(api, "ncc", case, "png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    found = decoded(image)
    assert found == {"Code128": f"&/{case['coi']}", "DataMatrix": f"&/{case['coi']}"}
    # What a hospital scanner types from either symbol identifies the case's COI.
    for text in found.values():
        assert parse_scan(text).coi == case["coi"]
    # 304.8 dpi: a narrow bar of 0.25 mm is 3 pixels.
    dpi = image.info["dpi"][0]
    assert round(dpi, 1) == 304.8


def test_pdf_label_rendered_to_an_image_decodes_too(api: Api) -> None:
    case = register(api, patient=PATIENT)
    r = label(api, "ncc", case, "pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    pdf = pypdfium2.PdfDocument(r.content)
    page = pdf[0]
    width_mm = page.get_width() / 72 * 25.4
    assert 40 < width_mm < 100  # a label, not a sheet
    image = page.render(scale=600 / 72).to_pil()
    assert decoded(image) == {"Code128": f"&/{case['coi']}", "DataMatrix": f"&/{case['coi']}"}
    text = page.get_textpage().get_text_range()
    assert "Collected: ____-__-__" in text  # not collected yet: a blank to write on
    assert "V2V-COI-LABEL 1.0" in text
    assert PATIENT not in text
    pdf.close()


def test_svg_label_carries_no_patient_reference_and_draws_the_check_box(api: Api) -> None:
    case = register(api, patient=PATIENT)
    r = label(api, "ncc", case, "svg")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    body = r.text
    assert body.startswith("<svg") and 'width="' in body
    assert PATIENT not in body
    assert 'fill="none" stroke="#000"' in body  # the box around the check character


def test_eye_readable_check_character_is_mod_37_2_in_its_box() -> None:
    coi = "CHW123426000123"
    data = LabelData(coi=coi, check=check_char(coi), product="P", site="S", collected_on=None)
    drawn = layout(data)
    boxes = [r for r in drawn.rects if not r.filled]
    assert len(boxes) == 1
    box = boxes[0]
    inside = {
        (round(r.x - box.x, 3), round(r.y - box.y, 3))
        for r in drawn.rects
        if r.filled and box.x < r.x < box.x + box.w and box.y < r.y < box.y + box.h
    }
    # The dots inside the box spell the MOD 37-2 character of the COI and nothing else.
    dot = min(r.w for r in drawn.rects if r.filled and box.x < r.x < box.x + box.w)
    pad_x = min(x for x, _ in inside)
    pad_y = min(y for _, y in inside)
    glyph = {(round((x - pad_x) / dot), round((y - pad_y) / dot)) for x, y in inside}
    expected = DOTS[check_char(coi)]
    ex0 = min(x for x, _ in expected)
    ey0 = min(y for _, y in expected)
    assert glyph == {(x - ex0, y - ey0) for x, y in expected}


def test_the_dot_font_tells_one_from_i_and_zero_from_o() -> None:
    assert DOTS["1"] != DOTS["I"] and DOTS["0"] != DOTS["O"]
    glyphs = [DOTS[c] for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"]
    assert len(set(glyphs)) == len(glyphs)


def test_code128_uses_subset_c_when_it_shortens_the_symbol_and_keeps_iso_dimensions() -> None:
    coi = "CHW123426000123"
    modules = code128_modules(symbol_data(coi))
    # All in subset B it would be start + 17 characters + check + stop = 20 × 11 + 2.
    all_b = (1 + len(symbol_data(coi)) + 1) * 11 + 13
    assert len(modules) < all_b
    width_mm = len(modules) * NARROW_MM + 2 * QUIET_MODULES * NARROW_MM
    assert NARROW_MM >= 0.17 and QUIET_MODULES >= 10
    bars = [r for r in layout(LabelData(coi, "K", "P", "S", None)).rects if r.h >= 5]
    assert bars and min(r.w for r in bars) == pytest.approx(NARROW_MM)
    assert max(r.x + r.w for r in bars) - min(r.x for r in bars) < width_mm
    assert len(datamatrix_modules(symbol_data(coi))) in (10, 12, 14, 16, 18, 20)


def test_collection_date_is_printed_once_collected_in_the_sites_time_zone(api: Api) -> None:
    j = Journey(api, patient=PATIENT)
    j.schedule()
    j.step("collected")
    r = label(api, "ncc", j.case, "pdf")
    pdf = pypdfium2.PdfDocument(r.content)
    text = pdf[0].get_textpage().get_text_range()
    pdf.close()
    assert re.search(r"Collected: \d{4}-\d{2}-\d{2}", text), text


def test_every_print_is_audited_and_numbered_per_coi(api: Api) -> None:
    case = register(api, patient=PATIENT)
    numbers = [label(api, "ncc", case, fmt).headers["x-v2v-print-number"] for fmt in ("png", "pdf")]
    assert numbers == ["1", "2"]
    entries = api.get("admin", "/api/v1/audit", params={"entity": "case", "entity_id": case["id"]})
    prints = [e for e in entries.json()["items"] if e["action"] == "case.label.printed"]
    assert [e["after"]["print_no"] for e in prints] == [1, 2]
    assert {e["after"]["format"] for e in prints} == {"png", "pdf"}
    assert all(e["actor"] == "ncc" for e in prints)
    assert api.get("admin", "/api/v1/audit/verify").json()["ok"] is True


def test_label_is_scoped_and_refuses_unknown_formats(api: Api) -> None:
    case = register(api, patient=PATIENT)
    assert label(api, "utokyo", case, "png").status_code == 404  # another hospital
    assert label(api, "viewer", case, "png").status_code == 403
    bad = label(api, "ncc", case, "gif")
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    entries = api.get("admin", "/api/v1/audit", params={"entity": "case", "entity_id": case["id"]})
    assert not [e for e in entries.json()["items"] if e["action"] == "case.label.printed"]


@pytest.mark.parametrize(
    "typed",
    [
        "&/{coi}",
        "{coi}",
        "{coi}{k}",
        "{coi} {k}",
        "=+02000&/{coi}=%0000",  # a compound message (DS023) from a Data Matrix
    ],
)
def test_scan_field_accepts_what_a_hospital_scanner_types(api: Api, typed: str) -> None:
    case = register(api, patient=PATIENT)
    text = typed.format(coi=case["coi"], k=check_char(case["coi"]))
    r = api.client.post("/api/v1/coi/verify", json={"coi": text})
    assert r.status_code == 200, r.text
    assert r.json()["coi"] == case["coi"]
    assert r.json()["valid"] is True
