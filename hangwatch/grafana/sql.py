"""The SQL of panels, template variables and alert rules: the catalogue's queries
(hangwatch.sinks.catalogue) with the ClickHouse plugin's macros as their frame
(docs/dashboards.md, "Macros"). Dashboards may use frontend macros ($__conditionalAll with
${var:singlequote}); alert rules run in Grafana's backend and get backend macros only.
Every table is named with its database, so the datasource's default database never matters."""

from __future__ import annotations

from typing import Any

from hangwatch.platform.settings import Settings
from hangwatch.sinks.catalogue import Context, MacroFrame, render


def panel(settings: Settings, name: str, **params: Any) -> str:
    return render(name, Context.of(settings, MacroFrame(dashboard=True)), **params)


def rule(settings: Settings, name: str, **params: Any) -> str:
    return render(name, Context.of(settings, MacroFrame(dashboard=False)), **params)
