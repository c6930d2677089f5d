"""The lake report: what the page holds (unit) and that it really draws in a browser (headless Chromium).

The data is small and hand-made: a DuckDB connection with a few tables standing in for the
catalog, and metrics CSV files written the way the metrics zone writes them. The browser
test opens the file from ``file://`` in Debian's Chromium driven by Playwright; it does not
skip when Chromium is missing (``.ci/run`` installs it), it fails.
"""
from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest

from lake_assets.analytics import report as R
from lake_assets.domain import Chart

GENERATED_AT = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
PREDICTIONS = "analytics.purchase_propensity"
HOSTILE = "<script>alert('x')</script> & \"quotes\""

CHARTS = {
    "logs": [
        Chart("Requests per service per day", "SELECT day, service, requests FROM logs.service_daily ORDER BY day",
              "line", x="day", y=("requests",), color="service", requires=("logs.service_daily",),
              description="Requests served, per service."),
        Chart("p95 latency per service", "SELECT day, service, p95_ms FROM logs.service_daily ORDER BY day",
              "line", x="day", y=("p95_ms",), color="service", requires=("logs.service_daily",)),
        Chart("Errors per service",
              "SELECT service, sum(errors) AS errors FROM logs.service_daily GROUP BY 1 ORDER BY 1",
              "bar", x="service", y=("errors",), requires=("logs.service_daily",)),
    ],
    "commerce": [
        Chart("Revenue and active users by country",
              "SELECT country, revenue, active_users FROM commerce.country_daily ORDER BY country",
              "bar", x="country", y=("revenue", "active_users"), requires=("commerce.country_daily",)),
        Chart("Largest orders", "SELECT order_id, note, amount FROM commerce.orders ORDER BY amount DESC",
              "table", requires=("commerce.orders",)),
        Chart("Refunds", "SELECT country AS day, revenue AS refunds FROM commerce.country_daily WHERE false", "line",
              x="day", y=("refunds",), requires=("commerce.country_daily",)),
    ],
    "tpcds": [
        Chart("Monthly store sales", "SELECT month, sales FROM tpcds.monthly_sales", "line", x="month",
              y=("sales",), requires=("tpcds.monthly_sales",)),
    ],
}
#: The charts above that have data, by the id the page gives them.
DRAWN_DOMAIN_CHARTS = {"logs--requests-per-service-per-day", "logs--p95-latency-per-service",
                       "logs--errors-per-service", "commerce--revenue-and-active-users-by-country",
                       "commerce--largest-orders"}


def _lake_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory stand-in for the catalog: the tables the sample charts and the model read."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA logs; CREATE SCHEMA commerce; CREATE SCHEMA analytics")
    con.execute("""CREATE TABLE logs.service_daily AS
        SELECT DATE '2024-01-01' + CAST(d AS INTEGER) AS day, s.service,
               1000 + 40 * d + 250 * s.k + (d * 37 + s.k * 11) % 90 AS requests,
               (d * 13 + s.k * 7) % 25 AS errors,
               120 + 15 * s.k + (d * 17 + s.k * 5) % 40 AS p95_ms
        FROM range(14) r(d), (VALUES ('api', 0), ('checkout', 1), ('search', 2)) s(service, k)""")
    con.execute("""CREATE TABLE commerce.country_daily AS
        SELECT * FROM (VALUES ('DE', 12500.5::DECIMAL(12, 2), 310), ('FR', 9800.25::DECIMAL(12, 2), 260),
                              ('US', 30110.0::DECIMAL(12, 2), 720), ('BR', 4100.75::DECIMAL(12, 2), 140))
        t(country, revenue, active_users)""")
    con.execute("CREATE TABLE commerce.orders (order_id VARCHAR, note VARCHAR, amount DOUBLE)")
    con.execute("INSERT INTO commerce.orders VALUES ('o-1', ?, 120.5), ('o-2', 'plain', 99.0), ('o-3', NULL, 10.25)",
                [HOSTILE])
    con.execute(f"""CREATE TABLE {PREDICTIONS} AS
        SELECT DATE '2024-01-14' + CAST(i % 2 AS INTEGER) AS event_date, 'u' || i AS user_id,
               pow(((i * 7919) % 1000) / 1000.0, 2.2) AS score, '3' AS model_version
        FROM range(1200) t(i)""")
    return con


def _query(con: duckdb.DuckDBPyConnection):
    return lambda sql: con.execute(sql).fetch_arrow_table()


def _available() -> set[str]:
    return {"logs.service_daily", "commerce.country_daily", "commerce.orders", PREDICTIONS}


def _write_metrics(root: Path, dataset: str, asset: str, folder: str, run_id: str, recorded_at: str,
                   rows: dict[str, float], event_date: str = "") -> None:
    """One metrics CSV as :mod:`lake_assets.quality.metrics` writes it."""
    path = root / dataset / asset / folder / f"{run_id}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["dataset", "asset", "event_date", "run_id", "metric", "value", "outcome", "recorded_at"])
        for metric, value in sorted(rows.items()):
            outcome = ("failed" if value else "passed") if metric.startswith(("rule.", "check.")) else ""
            writer.writerow([dataset, asset, event_date, run_id, metric, value, outcome, recorded_at])


def _sample_metrics(root: Path) -> Path:
    """Metrics with a rebuilt partition, a later check-only run and an unpartitioned asset run twice a day."""
    day1, day2 = "event_date=2024-01-01", "event_date=2024-01-02"
    # logs_silver 2024-01-01 was built by run-a, then rebuilt by run-b: run-b's numbers win.
    _write_metrics(root, "logs", "logs_silver", day1, "run-a", "2024-01-02T10:00:00+00:00",
                   {"rows": 90, "total_rows": 100, "quarantined_rows": 10, "quarantine_rate": 0.1,
                    "rule.bad_status": 10, "rule.missing_ts": 0}, "2024-01-01")
    _write_metrics(root, "logs", "logs_silver", day1, "run-b", "2024-01-02T11:00:00+00:00",
                   {"rows": 96, "total_rows": 100, "quarantined_rows": 4, "quarantine_rate": 0.04,
                    "rule.bad_status": 3, "rule.missing_ts": 2}, "2024-01-01")
    _write_metrics(root, "logs", "logs_silver", day2, "run-b", "2024-01-02T11:00:00+00:00",
                   {"rows": 200, "total_rows": 200, "quarantined_rows": 0, "quarantine_rate": 0,
                    "rule.bad_status": 0, "rule.missing_ts": 0}, "2024-01-02")
    _write_metrics(root, "logs", "logs_access", day1, "run-b", "2024-01-02T11:00:01+00:00",
                   {"rows": 45, "total_rows": 50, "quarantined_rows": 5, "quarantine_rate": 0.1,
                    "rule.bad_status": 5}, "2024-01-01")
    # commerce: a later run recorded only a check's outcome; it does not displace run-c's counts.
    _write_metrics(root, "commerce", "events_silver", day1, "run-c", "2024-01-02T09:00:00+00:00",
                   {"rows": 980, "total_rows": 1000, "quarantined_rows": 20, "quarantine_rate": 0.02,
                    "rule.unknown_user": 20, "rule.negative_amount": 0}, "2024-01-01")
    _write_metrics(root, "commerce", "events_silver", day1, "run-d", "2024-01-03T09:00:00+00:00",
                   {"check.events_fresh": 0}, "2024-01-01")
    # orders_discarded is unpartitioned: each run validated its own landing sets, both count.
    _write_metrics(root, "orders", "orders_discarded", "run_date=2024-01-02", "run-e", "2024-01-02T08:00:00+00:00",
                   {"total_rows": 10, "quarantined_rows": 1, "quarantine_rate": 0.1, "rule.bad_amount": 1})
    _write_metrics(root, "orders", "orders_discarded", "run_date=2024-01-02", "run-f", "2024-01-02T20:00:00+00:00",
                   {"total_rows": 30, "quarantined_rows": 2, "quarantine_rate": 0.066667, "rule.bad_amount": 2})
    # Not a reject metric at all: an unrelated asset's footers only.
    _write_metrics(root, "logs", "logs_gold", day1, "run-b", "2024-01-02T11:05:00+00:00",
                   {"rows": 12, "null_rate.service": 0}, "2024-01-01")
    return root


def _more_days(root: Path, days: int = 12) -> None:
    """Two more weeks of metrics after ``_sample_metrics``'s, so the sample report's lines have a shape."""
    for n in range(days):
        day = (dt.date(2024, 1, 3) + dt.timedelta(days=n)).isoformat()
        at = f"{day}T23:00:00+00:00"
        bad, late = (n * 7) % 11, (n * 5) % 4
        _write_metrics(root, "logs", "logs_silver", f"event_date={day}", f"run-l{n}", at,
                       {"total_rows": 2000, "quarantined_rows": bad + late, "rule.bad_status": bad,
                        "rule.missing_ts": late}, day)
        unknown = 5 + (n * 3) % 9
        _write_metrics(root, "commerce", "events_silver", f"event_date={day}", f"run-c{n}", at,
                       {"total_rows": 1500, "quarantined_rows": unknown, "rule.unknown_user": unknown}, day)
        _write_metrics(root, "orders", "orders_discarded", f"run_date={day}", f"run-o{n}", at,
                       {"total_rows": 40, "quarantined_rows": n % 3, "rule.bad_amount": n % 3})


def _model() -> R.ModelSummary:
    return R.ModelSummary(
        name="purchase_propensity", version="3", metrics={"auc": 0.81, "average_precision": 0.42},
        baseline={"auc": 0.66, "average_precision": 0.25},
        trained_at=dt.datetime(2024, 1, 14, 3, tzinfo=dt.timezone.utc),
        run_id="0f3c9a1e2b",
        decisions=[
            R.ModelDecision("2", dt.datetime(2024, 1, 7, 3, tzinfo=dt.timezone.utc), False,
                            "auc 0.70 did not beat the champion's 0.72", {"auc": 0.70, "average_precision": 0.30}),
            R.ModelDecision("3", dt.datetime(2024, 1, 14, 3, tzinfo=dt.timezone.utc), True,
                            "beat the champion and the baseline", {"auc": 0.81, "average_precision": 0.42}),
        ])


def _freshness() -> list[R.TableStatus]:
    at = dt.datetime(2024, 1, 15, 9, 30, tzinfo=dt.timezone.utc)
    return [
        R.TableStatus("logs.service_daily", "gold", at, "4d2a0c1e-0000", "SUCCESS", "passed"),
        R.TableStatus("commerce.country_daily", "gold", at - dt.timedelta(days=2), "9b1f0e2d-0000", "FAILURE",
                      "failed"),
        R.TableStatus("tpcds.monthly_sales", "gold", None),
    ]


def sample_report(directory: Path) -> tuple[Path, R.Report]:
    """A report on the sample lake written to ``directory/lake_report.html`` (also the README screenshot's)."""
    directory.mkdir(parents=True, exist_ok=True)
    metrics = _sample_metrics(directory / "metrics")
    _more_days(metrics)
    con = _lake_connection()
    try:
        built = R.build_report(query=_query(con), charts=CHARTS, available=_available(),
                               metrics_glob=R.metrics_glob(str(metrics)), freshness=_freshness(), model=_model(),
                               predictions_table=PREDICTIONS, lake_root="s3://example-lake", generated_at=GENERATED_AT)
    finally:
        con.close()
    path = directory / "lake_report.html"
    path.write_text(built.html, encoding="utf-8")
    return path, built


@pytest.fixture(scope="module")
def report_sample(tmp_path_factory) -> tuple[Path, R.Report]:
    return sample_report(tmp_path_factory.mktemp("report"))


def _statuses(built: R.Report) -> dict[str, str]:
    return {c.id: c.status for c in built.summary.charts}


# -- the page -----------------------------------------------------------------------------------------
def test_plotly_js_is_inlined_once_and_nothing_is_fetched(report_sample):
    import plotly.offline

    _, built = report_sample
    page = built.html
    bundle = plotly.offline.get_plotlyjs()
    assert page.count(bundle) == 1
    assert page.count("plotly.js v") == bundle.count("plotly.js v")
    # Outside the bundle (which mentions its own site in comments and defaults), nothing points online.
    rest = page.replace(bundle, "")
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    assert not re.search(r"<link\b", rest, re.I)
    assert "http://" not in rest and "https://" not in rest
    assert "cdn" not in rest.lower()
    assert rest.count("<script") == 2  # the bundle, then the figures


def test_every_chart_with_data_is_drawn_under_a_stable_id(report_sample):
    _, built = report_sample
    statuses = _statuses(built)
    drawn = {cid for cid, s in statuses.items() if s == R.DRAWN}
    assert DRAWN_DOMAIN_CHARTS <= drawn
    assert {"data-quality--quarantine-rate-per-dataset", "data-quality--reject-rate-per-rule",
            "data-quality--quarantine-per-dataset-whole-period", "freshness--tables", "model--current-model",
            "model--metrics-against-the-baseline", "model--decision-history",
            "model--score-distribution-of-the-latest-predictions"} <= drawn
    for cid in drawn:
        assert f'data-chart="{cid}"' in built.html
        assert next(c for c in built.summary.charts if c.id == cid).points > 0
    by_id = {c.id: c for c in built.summary.charts}
    assert by_id["logs--requests-per-service-per-day"].points == 14 * 3
    assert by_id["commerce--revenue-and-active-users-by-country"].points == 4 * 2
    assert by_id["commerce--largest-orders"].points == 3
    meta = built.summary.metadata()
    assert meta["charts_drawn"] == len(drawn) and meta["charts_failed"] == 0
    assert meta["data_points"] == sum(c.points for c in built.summary.charts)


def test_a_chart_without_its_tables_or_rows_is_a_note(report_sample):
    _, built = report_sample
    statuses = _statuses(built)
    assert statuses["tpcds--monthly-store-sales"] == R.MISSING
    assert statuses["commerce--refunds"] == R.EMPTY
    page = built.html
    missing = re.search(r'<figure[^>]*id="tpcds--monthly-store-sales"[^>]*>.*?</figure>', page, re.S).group(0)
    assert "No data yet: needs tpcds.monthly_sales" in missing and "data-chart=" not in missing
    empty = re.search(r'<figure[^>]*id="commerce--refunds"[^>]*>.*?</figure>', page, re.S).group(0)
    assert "No data yet: the query returned no rows." in empty
    # Both stay in the table of contents, so a reader sees what is still to come.
    assert 'href="#tpcds--monthly-store-sales"' in page


def test_table_cells_and_titles_are_escaped(report_sample):
    _, built = report_sample
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in built.html
    assert "<script>alert(" not in built.html
    con = _lake_connection()
    try:
        hostile = R.build_report(query=_query(con), charts={"x<y": [Chart(HOSTILE, "SELECT 1 AS a, 2 AS b", "bar",
                                                                          x="a", y=("b",))]},
                                 available=set(), lake_root="<root>", generated_at=GENERATED_AT)
    finally:
        con.close()
    assert "<script>alert(" not in hostile.html
    assert "&lt;root&gt;" in hostile.html
    assert hostile.summary.charts[0].id == "x-y--script-alert-x-script-quotes"


def test_a_failing_query_is_shown_and_counted_not_raised(tmp_path):
    con = duckdb.connect()
    try:
        built = R.build_report(query=_query(con), charts={"logs": [
            Chart("Broken", "SELECT * FROM nowhere", "line", x="a", y=("b",)),
            Chart("Wrong column", "SELECT 1 AS a", "line", x="a", y=("b",))]},
            available=set(), generated_at=GENERATED_AT)
    finally:
        con.close()
    statuses = _statuses(built)
    assert statuses["logs--broken"] == statuses["logs--wrong-column"] == R.FAILED
    assert "Could not draw this chart: CatalogException" in built.html
    assert "column &#x27;b&#x27; not in the query&#x27;s result" in built.html
    assert built.summary.metadata()["charts_failed"] == 2


def test_quality_rates_take_the_latest_run_of_each_partition(tmp_path):
    metrics = _sample_metrics(tmp_path / "metrics")
    con = duckdb.connect()
    try:
        rates = R.quality_rates(_query(con), R.metrics_glob(str(metrics)))
    finally:
        con.close()
    d1, d2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
    by_dataset = [(r["day"], r["dataset"], r["total_rows"], r["quarantined_rows"], round(r["quarantine_rate"], 6))
                  for r in rates.by_dataset.to_pylist()]
    assert by_dataset == [
        (d1, "commerce", 1000, 20, 0.02),
        (d1, "logs", 150, 9, 0.06),  # run-b's rebuild (4) + logs_access (5), not run-a's 10
        (d2, "logs", 200, 0, 0.0),
        (d2, "orders", 40, 3, 0.075),  # both unpartitioned runs of the day
    ]
    by_reason = [(r["day"], r["dataset"], r["reason"], r["rows"], round(r["reject_rate"], 6))
                 for r in rates.by_reason.to_pylist()]
    assert by_reason == [
        (d1, "commerce", "unknown_user", 20, 0.02),  # negative_amount never broke: left out
        (d1, "logs", "bad_status", 8, round(8 / 150, 6)),
        (d1, "logs", "missing_ts", 2, round(2 / 150, 6)),
        (d2, "logs", "bad_status", 0, 0.0),
        (d2, "logs", "missing_ts", 0, 0.0),
        (d2, "orders", "bad_amount", 3, 0.075),
    ]


def test_empty_sections_say_so(tmp_path):
    (tmp_path / "metrics").mkdir()
    con = duckdb.connect()
    try:
        built = R.build_report(query=_query(con), charts={"logs": []}, available=set(),
                               metrics_glob=R.metrics_glob(str(tmp_path / "metrics")), generated_at=GENERATED_AT)
    finally:
        con.close()
    page = built.html
    for text in ("This domain declares no charts.", "No metrics recorded yet.", "No table has been materialized yet.",
                 "No model yet: nothing has been trained."):
        assert text in page
    assert built.summary.metadata()["charts_drawn"] == 0 and built.summary.metadata()["charts_failed"] == 0
    assert "data-chart=" not in page


def test_predictions_without_their_table_are_a_note():
    con = _lake_connection()
    try:
        built = R.build_report(query=_query(con), charts={}, available=set(), model=_model(),
                               predictions_table=PREDICTIONS, generated_at=GENERATED_AT)
    finally:
        con.close()
    statuses = _statuses(built)
    assert statuses["model--score-distribution-of-the-latest-predictions"] == R.MISSING
    assert statuses["model--metrics-against-the-baseline"] == R.DRAWN
    assert f"no data yet (needs {PREDICTIONS})" in built.html


def test_score_histogram_counts_the_latest_day_only(report_sample):
    _, built = report_sample
    figures = re.search(r"var figures = (\[.*?\]);\n", built.html, re.S).group(1)
    import json

    hist = next(f for f in json.loads(figures) if f["id"] == "model--score-distribution-of-the-latest-predictions-plot")
    (trace,) = hist["data"]
    assert sum(trace["y"]) == 600  # one of the two days of 1,200 rows
    assert all(0 < x < 1 for x in trace["x"]) and len(trace["x"]) <= R.SCORE_BINS


# -- in a real browser ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(report_sample, open_in_browser):
    """The sample report opened from file:// in headless Chromium, once for the module."""
    path, built = report_sample
    yield built, open_in_browser(path)


def test_browser_shows_no_console_or_page_errors(rendered):
    _, seen = rendered
    assert seen["console"] == [] and seen["page"] == []
    assert seen["rendered"] not in (None, "error")


def test_browser_fetches_nothing_from_the_network(rendered):
    _, seen = rendered
    assert seen["blocked"] == []
    assert [u for u in seen["requests"] if not u.startswith(("file:", "data:", "blob:"))] == []


def test_browser_draws_every_chart_with_its_data_points(rendered):
    built, seen = rendered
    charts = {c["id"]: c for c in seen["charts"]}
    drawn = {c.id: c for c in built.summary.charts if c.status == R.DRAWN}
    assert set(charts) == set(drawn)
    assert int(seen["rendered"]) == len([c for c in charts.values() if c["kind"] != "table"])
    for cid, state in charts.items():
        assert state["traces"] > 0, cid
        assert state["points"] == state["declared"] == drawn[cid].points > 0, cid
        assert state["svg"] and state["marks"] > 0, cid
        if state["kind"] != "table":
            assert state["width"] > 300, cid


if __name__ == "__main__":
    # The README's screenshot: `python lake_assets_tests/analytics/test_report.py docs/lake_report.png`
    # (a report of a real lake: `lake_assets.analytics.report.screenshot(html, png, full_page=True)`).
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        html_path, _ = sample_report(Path(tmp))
        print(R.screenshot(html_path, sys.argv[1] if len(sys.argv) > 1 else "docs/lake_report.png", full_page=True))
