"""The SQL of panels, template variables and alert rules: the catalogue's queries
(hangwatch.sinks.catalogue) with the ClickHouse plugin's macros as their frame
(docs/dashboards.md, "Macros"). Dashboards may use frontend macros ($__conditionalAll with
${var:singlequote}); alert rules run in Grafana's backend and get backend macros only.
Every table is named with its database, so the datasource's default database never matters:
the dashboard database, where borrower ids are masked, unless privacy.show_borrower_ids
(docs/privacy.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hangwatch.grafana.texts import language
from hangwatch.i18n.glossary import words_for
from hangwatch.platform.settings import Settings
from hangwatch.sinks.catalogue import Context, MacroFrame, render
from hangwatch.sinks.migrate import shown_database

# Dimensions whose codes people see in alert labels and messages, by the glossary's name kinds.
NAMED_DIMENSIONS = {"branch": "branch", "campaign": "campaign", "channel": "channel", "dimension": "dimension"}


def _context(settings: Settings, dashboard: bool) -> Context:
    words = words_for(settings, language(settings))
    names = {dim: {code: words.name(kind, code) for code in words.glossary.names.get(kind, {})}
             for dim, kind in NAMED_DIMENSIONS.items()}
    ctx = Context.of(settings, MacroFrame(dashboard=dashboard), shown_database(settings))
    return dataclasses.replace(ctx, display_names=names)


def panel(settings: Settings, name: str, **params: Any) -> str:
    return render(name, _context(settings, dashboard=True), **params)


def rule(settings: Settings, name: str, **params: Any) -> str:
    return render(name, _context(settings, dashboard=False), **params)
