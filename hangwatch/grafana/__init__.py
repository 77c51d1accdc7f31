"""Grafana as code: the dashboards, alert rules and provisioning files of hangwatch, generated
from Python (grafana-foundation-sdk for dashboards), plus the `grafana deploy` request plan.

Every statement comes from the query catalogue (hangwatch.sinks.catalogue), which the CLI and
the risk report use too; the settings give the database, the local zone and the thresholds
the pipeline shares.

Modules: constants (uids, versions, Grafana-only thresholds), sql (catalogue queries with the
plugin's macros), query (the ClickHouse dataquery type), panels (panel helpers), live and
health (the two dashboards), alerts (alert rules, file and HTTP shapes), provisioning (YAML
files), files (write / check the generated files), deploy.
"""
