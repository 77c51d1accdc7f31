"""Grafana as code: the dashboards, alert rules and provisioning files of hangwatch, generated
from Python (grafana-foundation-sdk for dashboards), plus the `grafana deploy` request plan.

Modules: constants (uids, versions), sql (every panel and rule statement, also used by the
risk report), query (the ClickHouse dataquery type), panels (panel helpers), live and health
(the two dashboards), alerts (alert rules, file and HTTP shapes), provisioning (YAML files),
files (write / check the generated files), macros (the plugin's macro expansion), deploy.
"""
