"""The daily risk report: one self-contained HTML file (charts embedded as base64 PNG) for
people who prefer a document to a dashboard. Built from the dashboards' own queries
(hangwatch.sinks.catalogue), rendered with the report's period instead of Grafana's macros.

Modules: data (run the queries), charts (matplotlib, Agg), render (HTML with jinja2)."""
