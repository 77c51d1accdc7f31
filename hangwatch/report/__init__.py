"""The daily risk report: one self-contained HTML file (charts embedded as base64 PNG) for
people who prefer a document to a dashboard. Built from the dashboards' own SQL
(hangwatch.grafana.sql), expanded with the plugin's macro rules for the report's period.

Modules: data (run the queries), charts (matplotlib, Agg), render (HTML with jinja2)."""
