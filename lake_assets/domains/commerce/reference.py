"""Reference data from maintained packages, not hand-typed lists.

ISO 3166 countries and ISO 4217 currencies come from ``pycountry`` (the
Debian iso-codes data); UN regions (M49 sub-regions) from ``country_converter``.
Only the status descriptions are ours: they describe the contract's own codes.
"""
from __future__ import annotations

from functools import lru_cache

import pycountry

COUNTRY_CODES: tuple[str, ...] = tuple(sorted(c.alpha_2 for c in pycountry.countries))
CURRENCY_CODES: tuple[str, ...] = tuple(sorted(c.alpha_3 for c in pycountry.currencies))

STATUS_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "user": {
        "active": "Account in use",
        "suspended": "Account temporarily blocked",
        "closed": "Account closed by the user or the shop",
    },
    "transaction": {
        "pending": "Payment started, not settled",
        "completed": "Payment settled: counts as revenue",
        "failed": "Payment declined or errored",
        "refunded": "Money returned to the customer (a transaction of its own)",
    },
    "event_type": {
        "page_view": "A page was viewed",
        "product_view": "A product page was viewed",
        "add_to_cart": "A product was added to the cart",
        "checkout": "Checkout was started",
        "purchase": "A purchase was completed in the front end",
        "login": "The user signed in",
        "logout": "The user signed out",
    },
}


@lru_cache(maxsize=1)
def countries() -> list[dict[str, str | None]]:
    """Every ISO 3166 country: code, common name, UN region."""
    import logging

    import country_converter

    # country_converter logs a warning per code it does not know; a null region says it.
    logging.getLogger("country_converter").setLevel(logging.ERROR)
    converter = country_converter.CountryConverter()
    codes = list(COUNTRY_CODES)
    regions = converter.convert(codes, src="ISO2", to="UNregion", not_found=None)
    out = []
    for code, region in zip(codes, regions):
        country = pycountry.countries.get(alpha_2=code)
        name = getattr(country, "common_name", None) or country.name
        out.append({"country": code, "name": name, "region": region if isinstance(region, str) else None})
    return out
