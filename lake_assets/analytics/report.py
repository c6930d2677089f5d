"""The lake report: one self-contained HTML page people open to see what the lake holds.

:func:`build_report` gathers everything through one query callable (``sql -> Arrow``:
the project's :class:`~lake_assets.catalog.sql.LakeSQLResource` in production, so the
report reads the lake the way ``lake sql`` does and never re-implements a reader) and
renders the page:

1. a header: the lake root, when the page was generated, a table of contents;
2. one section per domain with the :class:`~lake_assets.domain.Chart` s it declares; a
   chart whose tables are not in the catalog, or whose query returns no rows, is a short
   "no data yet" note instead of an empty frame;
3. data quality over time: quarantine rate per dataset and reject rate per rule, per day,
   from the metrics zone's CSV files (read by DuckDB's ``read_csv`` through the same
   query callable, so ``s3://`` works wherever the catalog does);
4. freshness and last run of every table (rows the caller gives: :class:`TableStatus`);
5. the model: the champion's version, its metrics against the baseline, the decision
   history and the distribution of the latest predictions' scores.

Why one file with plotly.js inlined once: the page must open from ``file://``, from an S3
static website and on a laptop without network, so nothing may be fetched (a CDN script
gives a blank page offline). Inlining the library per chart (Plotly's default
``include_plotlyjs=True`` on every figure) would repeat 4.8 MB per chart; instead the page
carries plotly.js once, every figure as JSON, the shared template once, and one small
script that draws them. Each drawn chart is a ``<div data-chart="<section>--<title>">``
with a stable id, which is what the browser test (and anyone linking to a chart) uses.

Plotly and Playwright are imported inside the functions that need them: importing this
module (as the Dagster definitions do) costs nothing.
"""
from __future__ import annotations

import datetime as dt
import decimal
import html
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lake_assets.domain import Chart

#: ``sql -> pyarrow.Table`` (a ``RecordBatchReader`` is accepted too and read whole).
Query = Callable[[str], Any]

#: The flags Debian's Chromium needs on these machines (root, no GPU, closed network):
#: without the background-networking ones it keeps dialing Google's hosts at every start.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")

#: A chart's query result is cut at this many rows (a safety net: a chart's SQL should aggregate).
MAX_CHART_ROWS = 20_000
#: An HTML table shows at most this many rows (the rest is counted in a note).
MAX_TABLE_ROWS = 200
#: Bins of the score histogram over [0, 1].
SCORE_BINS = 20

DRAWN, MISSING, EMPTY, FAILED = "drawn", "missing", "empty", "failed"


# -- what the caller hands in ------------------------------------------------------------------------
@dataclass(frozen=True)
class TableStatus:
    """One row of the freshness section: a table, when it was last written and whether it is fresh."""

    table: str  # qualified name, ``logs.daily_activity``
    zone: str
    last_materialized_at: dt.datetime | None = None
    last_run_id: str = ""
    run_status: str = ""  # the last run's status (SUCCESS, FAILURE, ...); "" when none
    freshness: str = ""  # the freshness check's outcome (passed / failed); "" when the table has none


@dataclass(frozen=True)
class ModelDecision:
    """One champion/challenger decision: a trained version and whether it became the current one."""

    version: str
    decided_at: dt.datetime | str | None
    promoted: bool
    reason: str = ""
    #: The challenger's holdout metrics when the decision was made.
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSummary:
    """What the report shows of the model: the current version and how it compares to the baseline."""

    name: str
    version: str | None  # the champion; None while no version has beaten the baseline
    #: The champion's metrics on the holdout, and the baseline's on the same holdout.
    metrics: Mapping[str, float] = field(default_factory=dict)
    baseline: Mapping[str, float] = field(default_factory=dict)
    decisions: Sequence[ModelDecision] = ()
    trained_at: dt.datetime | str | None = None
    run_id: str = ""


# -- what comes out --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChartResult:
    """One chart slot of the page: drawn with ``points`` data points (rows for a table), or why not."""

    id: str
    section: str
    title: str
    kind: str
    status: str  # drawn | missing (tables not in the catalog) | empty (no rows) | failed (query error)
    points: int = 0
    detail: str = ""


@dataclass(frozen=True)
class ReportSummary:
    """What the page holds, for the asset's metadata and for tests."""

    charts: tuple[ChartResult, ...]

    def by_status(self, status: str) -> list[ChartResult]:
        return [c for c in self.charts if c.status == status]

    @property
    def data_points(self) -> int:
        return sum(c.points for c in self.charts)

    def metadata(self) -> dict[str, int]:
        """Numbers Dagster can plot across materializations."""
        return {"charts_drawn": len(self.by_status(DRAWN)), "charts_missing_tables": len(self.by_status(MISSING)),
                "charts_empty": len(self.by_status(EMPTY)), "charts_failed": len(self.by_status(FAILED)),
                "data_points": self.data_points}


@dataclass(frozen=True)
class Report:
    html: str
    summary: ReportSummary


@dataclass(frozen=True)
class QualityRates:
    """The metrics zone's numbers per day, the latest run of each partition only.

    ``by_dataset``: day, dataset, total_rows, quarantined_rows, quarantine_rate.
    ``by_reason``: day, dataset, reason, rows, reject_rate (rows that broke that rule over the
    dataset's rows checked that day; a row breaking two rules counts under both).
    """

    by_dataset: Any  # pyarrow.Table
    by_reason: Any  # pyarrow.Table


# -- public entry points ---------------------------------------------------------------------------
def build_report(*, query: Query, charts: Mapping[str, Sequence[Chart]], available: Iterable[str],
                 metrics_glob: str | None = None, freshness: Sequence[TableStatus] = (),
                 model: ModelSummary | None = None, predictions_table: str | None = None,
                 lake_root: str = "", generated_at: dt.datetime | None = None,
                 score_column: str = "score", date_column: str = "event_date") -> Report:
    """Query everything the page shows and render it as one self-contained HTML document.

    ``charts``: each domain's declared charts, by domain name (in page order). ``available``:
    the qualified names of the tables in the catalog; a chart (or the predictions) needing
    another table is a note. ``metrics_glob``: the metrics zone's CSV files
    (:func:`metrics_glob`). A chart whose query fails is a visible note too, counted as
    ``failed`` in the summary, so one broken query never hides the rest of the lake.
    """
    generated_at = generated_at or dt.datetime.now(dt.timezone.utc)
    available = set(available)
    page = _Page()
    for domain, declared in charts.items():
        section = page.section(domain, domain, f"Charts declared by the {domain} domain.")
        if not declared:
            section.note("This domain declares no charts.")
        for chart in declared:
            page.query_chart(section, chart, query, available)
    _quality_section(page, query, metrics_glob)
    _freshness_section(page, freshness, generated_at)
    _model_section(page, query, available, model, predictions_table, score_column, date_column)
    return Report(html=page.render(lake_root=lake_root, generated_at=generated_at),
                  summary=ReportSummary(tuple(page.results)))


def metrics_glob(metrics_uri: str) -> str:
    """Every metrics CSV under the metrics zone (``<dataset>/<asset>/<partition folder>/<run>.csv``)."""
    return f"{metrics_uri.rstrip('/')}/*/*/*/*.csv"


def quality_rates(query: Query, glob: str) -> QualityRates:
    """Quarantine and per-rule reject rates per dataset and day, from the metrics zone.

    A partition rebuilt by a later run counts once, with the numbers of the run that
    recorded its row counts last (``recorded_at``; a later check-only run, which records
    no row counts, does not displace them). An unpartitioned asset's runs each validate
    their own batch (orders' landing sets), so every run counts, on the UTC day it ran.
    Raises what DuckDB raises when no file matches.
    """
    source = (f"read_csv({_sql_str(glob)}, header = true, auto_detect = false, hive_partitioning = false, "
              "columns = {" + ", ".join(f"'{c}': 'VARCHAR'" for c in _METRIC_COLUMNS) + "})")
    kept = f"""
        WITH raw AS (
            SELECT dataset, asset, coalesce(event_date, '') AS event_date, run_id, metric,
                   try_cast(value AS DOUBLE) AS value, try_cast(recorded_at AS TIMESTAMPTZ) AS recorded_at
            FROM {source}),
        latest AS (
            SELECT dataset, asset, event_date, run_id,
                   coalesce(try_cast(nullif(event_date, '') AS DATE),
                            CAST(timezone('UTC', recorded_at) AS DATE)) AS day
            FROM raw WHERE metric = 'total_rows'
            QUALIFY row_number() OVER (
                PARTITION BY dataset, asset, CASE WHEN event_date = '' THEN run_id ELSE event_date END
                ORDER BY recorded_at DESC NULLS LAST, run_id DESC) = 1),
        kept AS (SELECT l.day, r.dataset, r.metric, r.value
                 FROM raw r JOIN latest l USING (dataset, asset, event_date, run_id)),
        totals AS (
            SELECT day, dataset, sum(value) FILTER (WHERE metric = 'total_rows') AS total_rows,
                   coalesce(sum(value) FILTER (WHERE metric = 'quarantined_rows'), 0) AS quarantined_rows
            FROM kept GROUP BY day, dataset)"""
    by_dataset = _as_table(query(f"""{kept}
        SELECT day, dataset, total_rows, quarantined_rows,
               CASE WHEN total_rows > 0 THEN quarantined_rows / total_rows ELSE 0 END AS quarantine_rate
        FROM totals ORDER BY day, dataset"""))
    by_reason = _as_table(query(f"""{kept},
        reasons AS (SELECT day, dataset, substr(metric, 6) AS reason, sum(value) AS rows
                    FROM kept WHERE metric LIKE 'rule.%' GROUP BY day, dataset, reason)
        SELECT day, dataset, reason, rows,
               CASE WHEN total_rows > 0 THEN rows / total_rows ELSE 0 END AS reject_rate
        FROM reasons JOIN totals USING (day, dataset)
        QUALIFY sum(rows) OVER (PARTITION BY dataset, reason) > 0
        ORDER BY day, dataset, reason"""))
    return QualityRates(by_dataset=by_dataset, by_reason=by_reason)


def chromium_executable() -> str:
    """Debian's Chromium (Playwright's own browser download does not work on these machines)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("Chromium is not installed: `apt-get install chromium` (Debian's package)")


def screenshot(html_path: str | Path, png_path: str | Path, *, width: int = 1280, height: int = 1800,
               full_page: bool = False, executable_path: str | None = None) -> Path:
    """A PNG of a report as headless Chromium draws it, once every chart has rendered (the README's picture).

    Playwright drives Debian's Chromium through ``executable_path``; nothing is downloaded.
    """
    from playwright.sync_api import sync_playwright

    png = Path(png_path)
    png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable_path or chromium_executable(),
                                     args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(Path(html_path).resolve().as_uri())
            page.wait_for_function(RENDERED_JS)
            page.screenshot(path=str(png), full_page=full_page)
        finally:
            browser.close()
    return png


#: True once the page's script has drawn every chart (or given up on one: then "error").
RENDERED_JS = "() => document.body.dataset.rendered !== undefined"

_METRIC_COLUMNS = ("dataset", "asset", "event_date", "run_id", "metric", "value", "outcome", "recorded_at")


# -- sections ---------------------------------------------------------------------------------------
def _quality_section(page: "_Page", query: Query, glob: str | None) -> None:
    section = page.section("data-quality", "Data quality",
                           "Rows quarantined by the validation rules, per dataset and per day, from the metrics "
                           "zone (the latest run of each partition).")
    titles = ("Quarantine rate per dataset", "Reject rate per rule", "Quarantine per dataset, whole period")
    if not glob:
        section.note("No metrics zone given: nothing to show yet.")
        for title in titles:
            page.record(section, title, "line", EMPTY, detail="no metrics zone")
        return
    try:
        rates = quality_rates(query, glob)
    except Exception as exc:  # noqa: BLE001 - no file yet is DuckDB's IOException; any failure is shown
        missing = "no files found" in str(exc).lower()
        section.note("No metrics recorded yet." if missing else f"Could not read the metrics zone: {_oneline(exc)}")
        for title in titles:
            page.record(section, title, "line", EMPTY if missing else FAILED, detail=_oneline(exc))
        return
    page.draw(section, Chart(titles[0], "", "line", x="day", y=("quarantine_rate",), color="dataset",
                             description="Quarantined rows over rows checked."),
              rates.by_dataset, percent=True)
    reasons = rates.by_reason
    if reasons.num_rows:
        import pyarrow as pa

        pairs = zip(reasons.column("dataset").to_pylist(), reasons.column("reason").to_pylist())
        labels = [f"{d} · {r}" for d, r in pairs]
        reasons = reasons.append_column("dataset_rule", pa.array(labels, pa.string()))
    page.draw(section, Chart(titles[1], "", "line", x="day", y=("reject_rate",), color="dataset_rule",
                             description="Rows that broke each rule over rows checked (rules that never broke "
                                         "are left out; a row breaking two rules counts under both)."),
              reasons, percent=True)
    page.draw(section, Chart(titles[2], "", "table"), _quality_totals(rates.by_dataset))


def _quality_totals(by_dataset) -> Any:
    import pyarrow as pa

    totals: dict[str, list[float]] = {}
    for row in by_dataset.to_pylist():
        acc = totals.setdefault(row["dataset"], [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += row["total_rows"] or 0
        acc[2] += row["quarantined_rows"] or 0
    names = sorted(totals)
    return pa.table({
        "dataset": names, "days": [totals[n][0] for n in names],
        "rows checked": [int(totals[n][1]) for n in names], "rows quarantined": [int(totals[n][2]) for n in names],
        "quarantine rate": [_percent(totals[n][2] / totals[n][1]) if totals[n][1] else "" for n in names]})


def _freshness_section(page: "_Page", rows: Sequence[TableStatus], generated_at: dt.datetime) -> None:
    section = page.section("freshness", "Freshness and last run",
                           "When each table was last written, by which run, and its freshness check.")
    title = "Tables"
    if not rows:
        section.note("No table has been materialized yet.")
        page.record(section, title, "table", EMPTY, detail="no tables")
        return
    header = ["table", "zone", "last materialized", "age", "last run", "run status", "freshness"]
    body = []
    for r in sorted(rows, key=lambda r: (r.zone, r.table)):
        body.append([
            _Cell(r.table), _Cell(r.zone), _Cell(_when(r.last_materialized_at) or "never"),
            _Cell(_age(r.last_materialized_at, generated_at)), _Cell(r.last_run_id[:8], title=r.last_run_id),
            _Cell(r.run_status or "—", css=_status_css(r.run_status)),
            _Cell(r.freshness or "no check", css=_status_css(r.freshness))])
    page.table(section, title, header, body, total=len(body))


def _model_section(page: "_Page", query: Query, available: set[str], model: ModelSummary | None,
                   predictions_table: str | None, score_column: str, date_column: str) -> None:
    section = page.section("model", "Purchase-propensity model",
                           "The current model, how it compares to the baseline on the same holdout, the "
                           "champion/challenger decisions, and the scores of the latest predictions.")
    titles = ("Current model", "Metrics against the baseline", "Decision history")
    if model is None:
        section.note("No model yet: nothing has been trained.")
        for title, kind in zip(titles, ("table", "bar", "table")):
            page.record(section, title, kind, EMPTY, detail="no model")
        if not predictions_table:
            page.record(section, "Score distribution of the latest predictions", "bar", EMPTY,
                        detail="no predictions table")
            return
    else:
        page.table(section, titles[0], ["model", "version", "trained at", "run"],
                   [[_Cell(model.name), _Cell(model.version or "none yet: no version beat the baseline"),
                     _Cell(_when(model.trained_at) or "—"), _Cell(model.run_id)]], total=1)
        _metrics_chart(page, section, titles[1], model)
        _decisions_table(page, section, titles[2], model.decisions)
    _scores_chart(page, section, query, available, predictions_table, score_column, date_column)


def _metrics_chart(page: "_Page", section: "_Section", title: str, model: ModelSummary) -> None:
    import pyarrow as pa

    names = [m for m in model.metrics if m in model.baseline] or list(model.metrics)
    if not names:
        section.note(f"{title}: no metrics recorded.")
        page.record(section, title, "bar", EMPTY, detail="no metrics")
        return
    label = f"model v{model.version}" if model.version else "model"
    rows = [(m, label, float(model.metrics[m])) for m in names]
    rows += [(m, "baseline", float(model.baseline[m])) for m in names if m in model.baseline]
    table = pa.table({"metric": [r[0] for r in rows], "who": [r[1] for r in rows], "value": [r[2] for r in rows]})
    page.draw(section, Chart(title, "", "bar", x="metric", y=("value",), color="who",
                             description="The current version against the recency-only baseline, same holdout."),
              table)


def _decisions_table(page: "_Page", section: "_Section", title: str, decisions: Sequence[ModelDecision]) -> None:
    if not decisions:
        section.note(f"{title}: no decision recorded yet.")
        page.record(section, title, "table", EMPTY, detail="no decisions")
        return
    metric_names = list(dict.fromkeys(m for d in decisions for m in d.metrics))
    header = ["decided at", "version", "outcome", "reason", *metric_names]
    ordered = sorted(decisions, key=lambda d: _when(d.decided_at), reverse=True)
    body = [[_Cell(_when(d.decided_at) or "—"), _Cell(d.version),
             _Cell("promoted" if d.promoted else "kept the champion", css="ok" if d.promoted else "muted"),
             _Cell(d.reason), *[_Cell(d.metrics.get(m, "")) for m in metric_names]] for d in ordered]
    page.table(section, title, header, body, total=len(body))


def _scores_chart(page: "_Page", section: "_Section", query: Query, available: set[str],
                  table: str | None, score_column: str, date_column: str) -> None:
    title = "Score distribution of the latest predictions"
    if not table:
        page.record(section, title, "bar", EMPTY, detail="no predictions table")
        section.note(f"{title}: no predictions yet.")
        return
    if table not in available:
        page.record(section, title, "bar", MISSING, detail=table)
        section.note(f"{title}: no data yet (needs {table}).")
        return
    ident, score, day = _qualified(table), _ident(score_column), _ident(date_column)
    sql = f"""
        WITH latest AS (SELECT {score} AS score, {day} AS day FROM {ident}
                        WHERE {day} = (SELECT max({day}) FROM {ident}) AND {score} IS NOT NULL)
        SELECT least(floor(score * {SCORE_BINS}), {SCORE_BINS - 1}) / {SCORE_BINS} + {0.5 / SCORE_BINS} AS score,
               count(*) AS users, any_value(day) AS day
        FROM latest GROUP BY 1 ORDER BY 1"""
    chart = Chart(title, sql, "bar", x="score", y=("users",),
                  description=f"Users by predicted purchase probability ({SCORE_BINS} bins), from {table}.")
    page.query_chart(section, chart, query, available, histogram=True)


# -- the page ---------------------------------------------------------------------------------------
@dataclass
class _Cell:
    """A table cell: a value shown escaped, with an optional CSS class and hover title."""

    value: Any
    css: str = ""
    title: str = ""


@dataclass
class _Section:
    id: str
    title: str
    intro: str
    blocks: list[str] = field(default_factory=list)
    toc: list[tuple[str, str]] = field(default_factory=list)  # (chart id, title)

    def note(self, text: str) -> None:
        self.blocks.append(f'<p class="note section-note">{_e(text)}</p>')


class _Page:
    """Collects sections, chart slots and figures, then renders them into one document."""

    def __init__(self) -> None:
        self.sections: list[_Section] = []
        self.figures: list[dict] = []
        self.results: list[ChartResult] = []
        self._ids: set[str] = set()

    def _unique(self, base: str) -> str:
        found, n = base, 2
        while found in self._ids:
            found, n = f"{base}-{n}", n + 1
        self._ids.add(found)
        return found

    def section(self, key: str, title: str, intro: str = "") -> _Section:
        section = _Section(self._unique(_slug(key)), title, intro)
        self.sections.append(section)
        return section

    def record(self, section: _Section, title: str, kind: str, status: str, *, points: int = 0,
               detail: str = "", chart_id: str | None = None) -> str:
        chart_id = chart_id or self._unique(f"{section.id}--{_slug(title)}")
        self.results.append(ChartResult(chart_id, section.id, title, kind, status, points, detail))
        return chart_id

    def query_chart(self, section: _Section, chart: Chart, query: Query, available: set[str],
                    histogram: bool = False) -> None:
        """Run a declared chart's query and draw it, or leave the note that says why not."""
        missing = [t for t in chart.requires if t not in available]
        if missing:
            self._empty(section, chart, MISSING, f"No data yet: needs {', '.join(missing)} (not in the catalog).",
                        detail=", ".join(missing))
            return
        try:
            table = _as_table(query(chart.sql))
        except Exception as exc:  # noqa: BLE001 - a broken query is shown on the page and counted, not fatal
            self._empty(section, chart, FAILED, f"Could not draw this chart: {_oneline(exc)}", detail=_oneline(exc))
            return
        self.draw(section, chart, table, histogram=histogram)

    def _empty(self, section: _Section, chart: Chart, status: str, text: str, detail: str = "") -> None:
        chart_id = self.record(section, chart.title, chart.kind, status, detail=detail)
        section.toc.append((chart_id, chart.title))
        section.blocks.append(
            f'<figure class="chart chart-{status}" id="{chart_id}" data-chart-status="{status}">'
            f'{_caption(chart.title, chart.description)}<p class="note">{_e(text)}</p></figure>')

    def draw(self, section: _Section, chart: Chart, table, *, percent: bool = False, histogram: bool = False) -> None:
        """Draw an Arrow table as the chart says (a Plotly figure, or an HTML table for ``table``)."""
        if table.num_rows == 0:
            self._empty(section, chart, EMPTY, "No data yet: the query returned no rows.", detail="no rows")
            return
        rows = table.num_rows
        if rows > MAX_CHART_ROWS:
            table = table.slice(0, MAX_CHART_ROWS)
        if chart.kind == "table":
            header = list(table.column_names)
            body = [[_Cell(v) for v in row] for row in zip(*(_plain_list(table.column(c)) for c in header))]
            self.table(section, chart.title, header, body, total=rows, description=chart.description)
            return
        try:
            figure, points = _figure(chart, table, percent=percent, histogram=histogram)
        except Exception as exc:  # noqa: BLE001 - a chart naming a column its query lacks, say
            self._empty(section, chart, FAILED, f"Could not draw this chart: {_oneline(exc)}", detail=_oneline(exc))
            return
        chart_id = self.record(section, chart.title, chart.kind, DRAWN, points=points)
        section.toc.append((chart_id, chart.title))
        cut = f'<p class="note">Showing the first {MAX_CHART_ROWS:,} of {rows:,} rows.</p>' \
            if rows > MAX_CHART_ROWS else ""
        section.blocks.append(
            f'<figure class="chart" id="{chart_id}">{_caption(chart.title, chart.description)}'
            f'<div class="plot" id="{chart_id}-plot" data-chart="{chart_id}" data-kind="{_e(chart.kind)}" '
            f'data-points="{points}"></div>{cut}</figure>')
        self.figures.append({"id": f"{chart_id}-plot", **figure})

    def table(self, section: _Section, title: str, header: Sequence[str], body: Sequence[Sequence[_Cell]], *,
              total: int, description: str = "") -> None:
        """An escaped HTML table as a chart slot (``data-kind="table"``, its rows as the points)."""
        shown = body[:MAX_TABLE_ROWS]
        chart_id = self.record(section, title, "table", DRAWN, points=len(shown))
        section.toc.append((chart_id, title))
        head = "".join(f"<th>{_e(h)}</th>" for h in header)
        lines = []
        for row in shown:
            cells = []
            for cell in row:
                cell = cell if isinstance(cell, _Cell) else _Cell(cell)
                classes = " ".join(c for c in (cell.css, "num" if _is_number(cell.value) else "") if c)
                attrs = (f' class="{classes}"' if classes else "") + \
                    (f' title="{_e(cell.title)}"' if cell.title else "")
                cells.append(f"<td{attrs}>{_e(_cell_text(cell.value))}</td>")
            lines.append(f"<tr>{''.join(cells)}</tr>")
        more = f'<p class="note">Showing {len(shown):,} of {total:,} rows.</p>' if total > len(shown) else ""
        section.blocks.append(
            f'<figure class="chart chart-table" id="{chart_id}">{_caption(title, description)}'
            f'<div class="table-wrap" data-chart="{chart_id}" data-kind="table" data-points="{len(shown)}">'
            f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table></div>{more}</figure>')

    def render(self, *, lake_root: str, generated_at: dt.datetime) -> str:
        import plotly.io as pio
        import plotly.offline
        from plotly.io.json import to_json_plotly

        toc = []
        for s in self.sections:
            items = "".join(f'<li><a href="#{cid}">{_e(t)}</a></li>' for cid, t in s.toc)
            toc.append(f'<li><a href="#{s.id}">{_e(s.title)}</a>{f"<ul>{items}</ul>" if items else ""}</li>')
        body = []
        for s in self.sections:
            blocks = "".join(s.blocks) or '<p class="note section-note">Nothing to show yet.</p>'
            intro = f'<p class="intro">{_e(s.intro)}</p>' if s.intro else ""
            body.append(f'<section id="{s.id}" data-section="{s.id}"><h2>{_e(s.title)}</h2>{intro}'
                        f'<div class="charts">{blocks}</div></section>')
        drawn = len([r for r in self.results if r.status == DRAWN])
        when = _when(generated_at)
        # to_json_plotly escapes <, > and / inside strings: no "</script>" can close the block early.
        figures = to_json_plotly(self.figures)
        template = to_json_plotly(pio.templates["plotly_white"].to_plotly_json())
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="lake_assets report">
<title>Lake report · {_e(when)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>Lake report</h1>
<dl class="facts"><dt>Lake</dt><dd><code>{_e(lake_root or "—")}</code></dd>
<dt>Generated</dt><dd><time datetime="{_e(generated_at.isoformat())}">{_e(when)}</time></dd>
<dt>Charts</dt><dd>{drawn} drawn of {len(self.results)}</dd></dl>
<nav aria-label="Contents"><h2>Contents</h2><ol class="toc">{"".join(toc)}</ol></nav>
</header>
<main>
{"".join(body)}
</main>
<script>{plotly.offline.get_plotlyjs()}</script>
<script>
(function () {{
  var template = {template};
  var figures = {figures};
  var config = {{displaylogo: false, responsive: true}};
  var pending = figures.map(function (f) {{
    var layout = Object.assign({{template: template}}, f.layout);
    return Plotly.newPlot(f.id, f.data, layout, config);
  }});
  Promise.all(pending).then(function () {{
    document.body.dataset.rendered = String(pending.length);
  }}, function (err) {{
    console.error("lake report: a chart failed to render", err);
    document.body.dataset.rendered = "error";
  }});
}})();
</script>
</body>
</html>
"""


# -- figures ----------------------------------------------------------------------------------------
def _figure(chart: Chart, table, *, percent: bool, histogram: bool) -> tuple[dict, int]:
    """A Plotly figure (as its JSON dict, template left to the page) from a query result, and its points.

    One trace per value of ``chart.color`` (sorted) and per ``y`` column; ``y`` defaults to
    every column but ``x`` and ``color``.
    """
    import plotly.graph_objects as go
    import pyarrow as pa

    if chart.kind not in ("line", "bar"):
        raise ValueError(f"unknown chart kind {chart.kind!r} (line, bar or table)")
    names = table.column_names
    x_name = chart.x or names[0]
    ys = list(chart.y) or [n for n in names if n not in (x_name, chart.color)]
    for needed in (x_name, *ys, *([chart.color] if chart.color else [])):
        if needed not in names:
            raise KeyError(f"column {needed!r} not in the query's result ({', '.join(names)})")
    if not ys:
        raise ValueError("no y column to draw")
    cols = {n: _plain_list(table.column(n)) for n in {x_name, *ys, *([chart.color] if chart.color else [])}}
    groups: dict[Any, list[int]] = {}
    if chart.color:
        for i, value in enumerate(cols[chart.color]):
            groups.setdefault(value, []).append(i)
        keys = sorted(groups, key=lambda v: (v is None, str(v)))
    else:
        groups, keys = {None: list(range(table.num_rows))}, [None]
    traces, points = [], 0
    for key in keys:
        idx = groups[key]
        for y in ys:
            if chart.color:
                name = f"{'(none)' if key is None else key}" + (f" · {y}" if len(ys) > 1 else "")
            else:
                name = y
            xs, vs = [cols[x_name][i] for i in idx], [cols[y][i] for i in idx]
            points += len(xs)
            if chart.kind == "line":
                traces.append(go.Scatter(x=xs, y=vs, name=name, mode="lines+markers"))
            else:
                traces.append(go.Bar(x=xs, y=vs, name=name, width=(1 / SCORE_BINS) if histogram else None))
    layout = dict(height=360, autosize=True, margin=dict(l=56, r=16, t=16, b=48),
                  legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                  showlegend=len(traces) > 1, hovermode="closest",
                  xaxis=dict(title=dict(text=x_name)),
                  yaxis=dict(title=dict(text=ys[0] if len(ys) == 1 else ""), tickformat=".1%" if percent else None,
                             rangemode="tozero"))
    x_type = table.schema.field(x_name).type
    if pa.types.is_date(x_type) and len(set(cols[x_name])) <= 10:
        # A few days only: one tick per day, not Plotly's hourly ticks.
        layout["xaxis"].update(dtick=86_400_000, tickformat="%b %d")
    if chart.kind == "bar":
        layout["barmode"] = "group"
        if histogram:
            layout["bargap"] = 0.02
            layout["xaxis"]["range"] = [0, 1]
    fig = go.Figure(data=traces, layout=layout).to_plotly_json()
    fig["layout"].pop("template", None)
    return {"data": fig["data"], "layout": fig["layout"]}, points


# -- small helpers ----------------------------------------------------------------------------------
def _as_table(result):
    """The query callable's answer as a ``pyarrow.Table`` (DuckDB's ``.arrow()`` is a reader in 1.4)."""
    return result.read_all() if hasattr(result, "read_all") else result


def _plain(value: Any) -> Any:
    """A value Plotly's JSON and the page show plainly: decimals as floats, times as naive UTC ISO text
    (plotly.js reads no time zone offsets)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _plain_list(column) -> list:
    return [_plain(v) for v in column.to_pylist()]


def _is_number(value: Any) -> bool:
    """Numbers (and rates already spelled ``12.5%``) are right-aligned in tables."""
    if isinstance(value, str):
        return bool(re.fullmatch(r"-?[\d,]+(\.\d+)?%", value))
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _cell_text(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) >= 1e-4 else f"{value:.3g}"
    return str(value)


def _percent(rate: float) -> str:
    return f"{rate:.2%}"


def _when(value: dt.datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _age(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return ""
    if (value.tzinfo is None) != (now.tzinfo is None):
        value, now = value.replace(tzinfo=None), now.replace(tzinfo=None)
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _status_css(outcome: str) -> str:
    text = outcome.lower()
    if text in ("success", "passed", "fresh", "ok"):
        return "ok"
    if text in ("failure", "failed", "stale", "canceled", "cancelled", "error"):
        return "bad"
    return "muted"


def _caption(title: str, description: str) -> str:
    desc = f"<p>{_e(description)}</p>" if description else ""
    return f"<figcaption><h3>{_e(title)}</h3>{desc}</figcaption>"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _oneline(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    return ".".join(_ident(part) for part in name.split("."))


_CSS = """
:root { --fg: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --ok: #1f7a4d; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header, main { max-width: 1320px; margin: 0 auto; padding: 16px 24px; }
header { background: #fff; border-bottom: 1px solid var(--line); max-width: none; }
header > * { max-width: 1272px; margin-left: auto; margin-right: auto; }
h1 { margin: 4px auto 8px; font-size: 24px; }
h2 { font-size: 19px; margin: 8px 0 4px; }
h3 { font-size: 15px; margin: 0; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 auto 8px; }
.facts dt { color: var(--muted); } .facts dd { margin: 0; }
nav h2 { font-size: 14px; color: var(--muted); margin: 8px auto 2px; }
.toc { columns: 3 260px; margin: 0 auto; padding-left: 20px; font-size: 13px; }
.toc ul { padding-left: 16px; margin: 0 0 4px; }
a { color: #1d5fa8; text-decoration: none; } a:hover { text-decoration: underline; }
section { margin: 24px 0 8px; }
.intro { color: var(--muted); margin: 0 0 10px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 14px; }
.chart { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
         min-width: 0; }
.chart figcaption p { color: var(--muted); margin: 2px 0 6px; font-size: 13px; }
.plot { width: 100%; height: 360px; }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
.section-note { grid-column: 1 / -1; }
.table-wrap { overflow: auto; max-height: 460px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { position: sticky; top: 0; background: #fff; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.ok { color: var(--ok); font-weight: 600; } td.bad { color: var(--bad); font-weight: 600; }
td.muted { color: var(--muted); }
code { font-size: 13px; }
"""
