"""`hangwatch grafana`: regenerate the dashboards and provisioning files, deploy to a Grafana."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from hangwatch.cli.common import console, fail, fail_text, settings
from hangwatch.grafana.constants import ENV_CH_PASSWORD, ENV_GRAFANA_TOKEN

grafana_app = typer.Typer(help="Grafana dashboards, alert rules and provisioning (deploy/grafana/).",
                          no_args_is_help=True)


@grafana_app.command("dashboards")
def dashboards(
    check: Annotated[bool, typer.Option("--check", help="Only report stale files; exit 1 if any (for CI).")] = False,
) -> None:
    """Regenerate deploy/grafana/dashboards/*.json and deploy/grafana/provisioning/** from the code."""
    from hangwatch.grafana import files

    if check:
        stale = files.stale(s=settings())
        if stale:
            raise fail(f"stale generated files (run `hangwatch grafana dashboards`): {', '.join(stale)}")
        console.print("deploy/grafana is up to date")
        return
    changed = files.write(s=settings())
    console.print(f"updated: {', '.join(str(p.relative_to(files.DEPLOY_DIR)) for p in changed)}"
                  if changed else "deploy/grafana is up to date")


@grafana_app.command("deploy")
def deploy(
    url: Annotated[str, typer.Option("--url", envvar="GRAFANA_URL", help="Grafana base URL, e.g. http://grafana:3000.")]
    = "http://127.0.0.1:3000",
    token: Annotated[str | None, typer.Option("--token", envvar=ENV_GRAFANA_TOKEN, show_default=False,
                                              help="Service account token (Admin role).")] = None,
    clickhouse_host: Annotated[str, typer.Option(envvar="HANGWATCH_GRAFANA_CH_HOST",
                                                 help="ClickHouse host as Grafana reaches it (native port 9000).")]
    = "clickhouse",
    clickhouse_password: Annotated[str | None, typer.Option(envvar=ENV_CH_PASSWORD, show_default=False,
                                                            help="Password of the read-only ClickHouse user "
                                                                 "`grafana`.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print every request as JSON (secrets masked); "
                                                            "send nothing.")] = False,
    notifications: Annotated[bool, typer.Option(
        "--notifications/--no-notifications",
        help="Also deploy the message templates, the contact point (the channels whose HANGWATCH_DINGTALK_URL, "
             "HANGWATCH_WECOM_URL, HANGWATCH_ALERT_EMAIL_TO, HANGWATCH_ALERT_WEBHOOK_URL are set) and the "
             "notification policy tree (org-wide: it replaces the tree).")] = True,
) -> None:
    """Push the datasource, folder, dashboards, alert rules and notifications through Grafana's HTTP API
    (idempotent)."""
    from hangwatch.grafana import deploy as d

    try:
        requests = d.plan(clickhouse_host, clickhouse_password or os.environ.get(ENV_CH_PASSWORD, ""), settings(),
                          notifications=notifications)
    except d.DeployError as e:
        raise fail(str(e)) from e
    if dry_run:
        typer.echo(json.dumps([r.to_json() for r in requests], indent=2, ensure_ascii=False))
        console.print(f"dry run: {len(requests)} requests for {url}, none sent")
        return
    if not token:
        raise fail(f"no Grafana token: pass --token or set {ENV_GRAFANA_TOKEN} (a service account token, Admin role)")
    if not clickhouse_password:
        raise fail(f"no ClickHouse password for the datasource: pass --clickhouse-password or set {ENV_CH_PASSWORD}")
    try:
        version = d.deploy(d.connect(url, token), requests)
    except d.DeployError as e:
        raise fail(str(e)) from e
    except OSError as e:  # requests' ConnectionError and timeouts are OSErrors
        raise fail_text("error.grafana_unreachable", url=url, kind=type(e).__name__) from e
    console.print(f"deployed to Grafana {version} at {url}: datasource, folder, "
                  f"{sum(r.path == '/api/dashboards/db' for r in requests)} dashboards, alert rules"
                  + (", templates, contact point, policies" if notifications else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(grafana_app, name="grafana")
