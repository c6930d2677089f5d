"""One folder per domain: its contract, tables, assets, checks, sensors and generator.

:data:`DOMAINS` lists them: a new domain is a new folder and one more entry here.
Each exposes a :class:`~lake_assets.domain.Domain` (importing it loads no assets:
those load when its definitions are built), so the CLI can list domains cheaply.
"""
from __future__ import annotations

from lake_assets.domain import Domain


def _all() -> dict[str, Domain]:
    from lake_assets import analytics
    from lake_assets.domains import commerce, logs, orders, tpcds

    # The analytics room consumes the others' tables: it comes last, so `lake run` builds it from theirs.
    return {d.name: d for d in (logs.DOMAIN, commerce.DOMAIN, orders.DOMAIN, tpcds.DOMAIN, analytics.DOMAIN)}


DOMAINS: dict[str, Domain] = _all()
