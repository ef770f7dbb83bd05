"""The one page at ``/``: live stats, a search box, the recent reports with links; every text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import jinja2

from zerosite.service.metrics import Stats

__all__ = ["PageRow", "render_page", "report_url"]


@dataclass(frozen=True)
class PageRow:
    project_id: str
    module: str
    address: str
    status: str
    generated_at: str

    @property
    def url(self) -> str:
        return report_url(self.project_id, self.module)


def report_url(project_id: str, module: str) -> str:
    return f"/v1/reports/{quote(project_id, safe='')}/{quote(module, safe='')}"


_TEMPLATE = """<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ZeroSite</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: system-ui, "Noto Sans CJK KR", "NanumGothic", sans-serif; color: #1d2733;
         margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }
  h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 1.8rem; }
  .muted { color: #5b6776; font-size: .9rem; }
  dl.stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: .6rem; margin: 1rem 0; }
  dl.stats div { background: #f1f4f8; border-radius: .4rem; padding: .6rem .8rem; }
  dl.stats dt { font-size: .8rem; color: #5b6776; } dl.stats dd { margin: 0; font-size: 1.3rem; font-weight: 600; }
  form { display: flex; gap: .5rem; } input[type=search] { flex: 1; padding: .5rem; font-size: 1rem; }
  button { padding: .5rem 1rem; font-size: 1rem; }
  .scroll { overflow-x: auto; }  /* a narrow screen scrolls the table, not the page */
  table { border-collapse: collapse; width: 100%; margin-top: .6rem; }
  @media (max-width: 30rem) { body { margin: 1rem auto; } dl.stats { grid-template-columns: repeat(2, 1fr); } }
  th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e1e6ec; font-size: .92rem; }
  td:first-child, td:last-child { white-space: nowrap; } td:nth-child(3) { min-width: 14rem; }
  .failed { color: #b3261e; }
</style>
</head>
<body>
{% macro table(rows, id) %}
<div class="scroll"><table id="{{ id }}">
  <thead><tr><th>project</th><th>module</th><th>address</th><th>status</th><th>generated (UTC)</th></tr></thead>
  <tbody>
  {% for row in rows %}
  <tr>
    <td>{% if row.status == "written" %}<a href="{{ row.url }}">{{ row.project_id }}</a>
        {%- else %}{{ row.project_id }}{% endif %}</td>
    <td>{{ row.module }}</td><td>{{ row.address }}</td>
    <td class="{{ 'failed' if row.status == 'failed' else '' }}">{{ row.status }}</td>
    <td>{{ row.generated_at[:19] | replace("T", " ") }}</td>
  </tr>
  {% endfor %}
  </tbody>
</table></div>
{% endmacro %}
<h1>ZeroSite</h1>
<p class="muted">LH purchase-rental screening reports, made on request. Live figures of this server process
(pid <span id="pid">{{ stats.pid }}</span>), refreshed every 2 s.</p>
<dl class="stats">
  <div><dt>uptime</dt><dd id="uptime">{{ "%.0f" | format(stats.uptime_s) }} s</dd></div>
  <div><dt>reports generated</dt><dd id="reports">{{ stats.reports_generated }}</dd></div>
  <div><dt>average per report</dt><dd id="avg">{{ "%.1f" | format(stats.avg_ms_per_report) }} ms</dd></div>
  <div><dt>reports per minute</dt><dd id="rpm">{{ "%.1f" | format(stats.reports_per_minute) }}</dd></div>
  <div><dt>CPU</dt><dd id="cpu">{{ "%.1f" | format(stats.cpu_percent) }} %</dd></div>
  <div><dt>memory</dt><dd id="mem">{{ "%.1f" | format(stats.memory_mb) }} MB</dd></div>
</dl>
<h2>Search</h2>
<form method="get" action="/" role="search">
  <input type="search" name="q" value="{{ query }}" placeholder="address, district or module (e.g. 마포 or M5)"
         aria-label="search the reports">
  <button type="submit">Search</button>
</form>
{% if query %}
<p class="muted" id="result-count">{{ results | length }} result{{ "" if results | length == 1 else "s" }} for
  “{{ query }}”{% if problem %}: {{ problem }}{% endif %}</p>
{{ table(results, "results") }}
{% endif %}
<h2>Recent reports</h2>
{% if recent %}{{ table(recent, "recent") }}{% else %}<p class="muted">No report yet: POST a project to
<code>/v1/reports</code>.</p>{% endif %}
<p class="muted">API: <a href="/docs">/docs</a> · <a href="/openapi.json">/openapi.json</a> ·
<a href="/metrics">/metrics</a> · <a href="/v1/stats">/v1/stats</a></p>
<script nonce="{{ nonce }}">
(function () {
  function set(id, text) { document.getElementById(id).textContent = text; }
  async function refresh() {
    try {
      const response = await fetch("/v1/stats", {cache: "no-store"});
      if (!response.ok) return;
      const s = await response.json();
      set("uptime", Math.round(s.uptime_s) + " s");
      set("reports", String(s.reports_generated));
      set("avg", s.avg_ms_per_report.toFixed(1) + " ms");
      set("rpm", s.reports_per_minute.toFixed(1));
      set("cpu", s.cpu_percent.toFixed(1) + " %");
      set("mem", s.memory_mb.toFixed(1) + " MB");
      set("pid", String(s.pid));
    } catch (e) { /* the next refresh tries again */ }
  }
  setInterval(refresh, 2000);
})();
</script>
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_PAGE = _ENV.from_string(_TEMPLATE)


def render_page(
    stats: Stats,
    recent: Sequence[PageRow],
    query: str,
    results: Sequence[PageRow],
    problem: str | None,
    nonce: str,
) -> str:
    """The page's HTML; ``nonce`` lets its one script run under the page's Content-Security-Policy."""
    return _PAGE.render(stats=stats, recent=recent, query=query, results=results, problem=problem, nonce=nonce)
