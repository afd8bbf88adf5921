"""Languages and formats: Babel message catalogues, locale choice, dates and numbers.

The catalogues are the ``.po`` files under ``translations/`` (English is the source
language). They are compiled in memory with Babel when the module loads, so no binary
``.mo`` file is kept in the repository. A language comes from the ``v2v_lang`` cookie (the
switch in the page header), else from ``Accept-Language``, else English.
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import negotiate_locale
from babel.dates import format_date, format_datetime, format_skeleton, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent
from starlette.requests import Request

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "v2v_lang"
DOMAIN = "messages"


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


@lru_cache
def catalogues() -> dict[str, gettext.NullTranslations]:
    """Every language's translations, compiled from its ``.po`` file with Babel."""
    out: dict[str, gettext.NullTranslations] = {DEFAULT_LANGUAGE: gettext.NullTranslations()}
    for code in LANGUAGES:
        path = TRANSLATIONS / code / "LC_MESSAGES" / f"{DOMAIN}.po"
        if code == DEFAULT_LANGUAGE or not path.exists():
            continue
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=code, domain=DOMAIN)
        compiled = BytesIO()
        write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt would
        compiled.seek(0)
        out[code] = gettext.GNUTranslations(compiled)
    return out


def _accepted(header: str) -> list[str]:
    """Language tags from an Accept-Language header, best first."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag.replace("_", "-")))
    return [tag for _, _, tag in sorted(weighted)]


def choose_language(request: Request) -> str:
    cookie = request.cookies.get(LANG_COOKIE, "")
    if cookie in LANGUAGES:
        return cookie
    preferred = _accepted(request.headers.get("accept-language", ""))
    # Also offer each tag's primary language (en-GB -> en, ja-JP -> ja).
    candidates = [t for tag in preferred for t in (tag, tag.split("-")[0])]
    chosen = negotiate_locale(candidates, list(LANGUAGES), sep="-")
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def zone_label(zone: ZoneInfo, now: datetime, language: str) -> str:
    """``Asia/Tokyo (UTC+09:00)``: the zone the page shows its times in."""
    offset = format_datetime(now, "xxx", tzinfo=zone, locale=language)
    return f"{zone.key} (UTC{offset})"


@dataclass(frozen=True)
class Lang:
    """One request's language and display time zone: translations and formatters."""

    code: str
    zone: ZoneInfo

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.code)

    def gettext(self, message: str, **values: Any) -> str:
        text = catalogues()[self.code].gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        text = catalogues()[self.code].ngettext(singular, plural, n)
        return text % {"n": n, **values}

    # ---- times: always in the page's zone, always with the offset visible ----

    def dt(self, value: datetime | None) -> str:
        if value is None:
            return "—"
        local = value.astimezone(self.zone)
        day = format_date(local, "medium", locale=self.code)
        clock = format_datetime(local, "HH:mm xxx", tzinfo=self.zone, locale=self.code)
        return f"{day} {clock}"

    def day(self, value: datetime) -> str:
        return format_date(value.astimezone(self.zone), "medium", locale=self.code)

    def month(self, value: datetime) -> str:
        return format_skeleton("yMMMM", value, tzinfo=self.zone, locale=self.code)

    def iso(self, value: datetime | None) -> str:
        return value.astimezone(self.zone).isoformat(timespec="minutes") if value else ""

    def local_naive(self, value: datetime) -> str:
        """Wall-clock time in the page's zone, for chart axes (plotly ignores offsets)."""
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def ago(self, delta: timedelta) -> str:
        return format_timedelta(delta, threshold=1.5, locale=self.code)

    # ---- numbers ----

    def num(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return "—"
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, pattern, locale=self.code)

    def pct(self, value: float | None) -> str:
        if value is None:
            return "—"
        return format_percent(value, "#,##0.0%", locale=self.code)

    def money(self, value: float | None, currency: str | None) -> str:
        if value is None:
            return "—"
        if not currency:
            return self.num(value, 0)
        return format_currency(value, currency, locale=self.code)

    def temp(self, value: float | None) -> str:
        return "—" if value is None else f"{self.num(value, 1)} °C"
