"""Shared by the analytics tests: the lake report opened in a real browser (Debian's chromium)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest


def open_in_browser(path: Path | str) -> dict:
    """A report opened from file:// in headless Chromium (Playwright driving ``/usr/bin/chromium``).

    Returns what the page did: console errors, page errors, every request it made, requests
    to the network (blocked), the ``data-rendered`` mark, and each chart slot's state read
    from the live DOM.
    """
    from playwright.sync_api import sync_playwright

    from lake_assets.analytics import report as R

    path = Path(path)
    seen = {"console": [], "page": [], "requests": [], "blocked": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=R.chromium_executable(), args=list(R.CHROMIUM_ARGS))
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def block(route):
                seen["blocked"].append(route.request.url)
                route.abort()

            context.route(re.compile(r"^(https?|wss?|ftp)://"), block)
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and seen["console"].append(m.text))
            page.on("pageerror", lambda e: seen["page"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(R.RENDERED_JS, timeout=60_000)
            seen["rendered"] = page.evaluate("document.body.dataset.rendered")
            seen["charts"] = page.evaluate(_CHART_STATE_JS)
        finally:
            browser.close()
    return seen


@pytest.fixture(scope="session", name="open_in_browser")
def open_in_browser_fixture():
    """``open_in_browser(path) -> dict``: see :func:`open_in_browser`."""
    return open_in_browser


_CHART_STATE_JS = """() => Array.from(document.querySelectorAll('[data-chart]')).map(el => {
  const kind = el.dataset.kind;
  if (kind === 'table') {
    return {id: el.dataset.chart, kind, declared: Number(el.dataset.points),
            points: el.querySelectorAll('tbody tr').length, traces: 1, svg: true, marks: 1};
  }
  const data = el.data || [];
  const points = data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);
  return {id: el.dataset.chart, kind, declared: Number(el.dataset.points), points, traces: data.length,
          svg: !!el.querySelector('svg.main-svg, canvas'), marks: el.querySelectorAll('.point').length,
          width: el.getBoundingClientRect().width};
})"""
