"""Geocoding new sites by address: geopy's Nominatim over an injected httpx client.

The service must never hang on an unreachable geocoder (hospital networks often have no
route to the internet): every call has a short timeout, and a failure is reported so the
caller can ask for coordinates instead.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from geopy.adapters import AdapterHTTPError, BaseSyncAdapter
from geopy.exc import GeocoderServiceError, GeocoderTimedOut, GeocoderUnavailable
from geopy.geocoders import Nominatim


class HttpxAdapter(BaseSyncAdapter):  # type: ignore[misc]
    """A geopy adapter on an injected httpx.Client (tests fake it at the transport)."""

    def __init__(self, *, proxies: Any, ssl_context: Any, client: httpx.Client) -> None:
        super().__init__(proxies=proxies, ssl_context=ssl_context)
        self.client = client

    def get_text(self, url: str, *, timeout: float, headers: dict[str, str]) -> str:
        try:
            response = self.client.get(url, timeout=timeout, headers=headers)
        except httpx.TimeoutException as exc:
            raise GeocoderTimedOut(f"geocoder timed out after {timeout} s") from exc
        except httpx.HTTPError as exc:
            raise GeocoderUnavailable(f"geocoder unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise AdapterHTTPError(
                f"geocoder answered {response.status_code}",
                status_code=response.status_code,
                headers=dict(response.headers),
                text=response.text,
            )
        return response.text

    def get_json(self, url: str, *, timeout: float, headers: dict[str, str]) -> Any:
        return json.loads(self.get_text(url, timeout=timeout, headers=headers))


class GeocodingFailed(Exception):
    pass


class SiteGeocoder:
    def __init__(
        self,
        client: httpx.Client,
        *,
        domain: str = "nominatim.openstreetmap.org",
        scheme: str = "https",
        timeout_s: float = 3.0,
        user_agent: str = "vein2vein-site-geocoder",
    ) -> None:
        self.nominatim = Nominatim(
            user_agent=user_agent,
            domain=domain,
            scheme=scheme,
            timeout=timeout_s,
            adapter_factory=lambda proxies, ssl_context: HttpxAdapter(
                proxies=proxies, ssl_context=ssl_context, client=client
            ),
        )

    def locate(self, address: str) -> tuple[float, float]:
        """(lat, lon) of an address, or GeocodingFailed with the reason."""
        try:
            found = self.nominatim.geocode(address, exactly_one=True)
        except GeocoderTimedOut as exc:
            raise GeocodingFailed("the geocoder did not answer in time") from exc
        except (GeocoderServiceError, AdapterHTTPError, ValueError) as exc:
            raise GeocodingFailed(f"the geocoder is unavailable ({exc})") from exc
        if found is None:
            raise GeocodingFailed("the geocoder found no such address")
        return float(found.latitude), float(found.longitude)
