"""`hangwatch topics`: create and list the topics declared in schemas/topics/*.yaml."""

from __future__ import annotations

import typer
from rich.table import Table

from hangwatch.cli.common import console, fail_for, settings
from hangwatch.platform.kafka_admin import ONE_SHOT_TIMEOUT_S, describe, ensure_topics
from hangwatch.schemas.topics import registry

topics_app = typer.Typer(help="Create and list Kafka topics from the topic registry.", no_args_is_help=True)


@topics_app.command("create")
def create() -> None:
    """Create every registry topic that is missing (idempotent); grow partition counts."""
    try:
        created = ensure_topics(settings().kafka, timeout_s=ONE_SHOT_TIMEOUT_S)
    except RuntimeError as e:
        raise fail_for(e) from e
    console.print(f"created: {', '.join(created) if created else 'nothing (all topics exist)'}")


@topics_app.command("list")
def list_() -> None:
    """Show the registry next to what the broker has."""
    try:
        live = describe(settings().kafka)
    except RuntimeError as e:
        raise fail_for(e) from e
    t = Table("topic", "partitions (registry)", "partitions (broker)", "cleanup", "retention", "key")
    for s in registry().values():
        t.add_row(s.name, str(s.partitions), str(live.get(s.name, "missing")), s.cleanup_policy,
                  f"{s.retention_ms / 86_400_000:g} d", s.key)
    console.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
