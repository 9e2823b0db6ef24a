"""`closeloop config check`: validate the config file and tell what it holds."""

from __future__ import annotations

import click

from closeloop.cli._common import Context, echo_json, pass_ctx, safe_url


@click.group("config")
def config_group() -> None:
    """Inspect the configuration.

    \b
    Example:
      closeloop --config ./closeloop.toml config check
    """


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_check(obj: Context, as_json: bool) -> None:
    """Validate the config file; print where it came from and what it holds (or the one problem).

    \b
    Example:
      closeloop --config ./closeloop.toml config check
    """
    from closeloop.integrations.registry import check

    config = obj.config()
    check(config)  # the integration plugins' sections too (ConfigError: one line, exit 2)
    info = {"source": config.source, "people": len(config.people_directory()), "services": len(config.services),
            "severities": sorted(config.severity), "temporal_address": config.temporal.address,
            "namespace": config.temporal.namespace, "task_queue": config.temporal.task_queue,
            "db_url": safe_url(config.db_url)}
    if as_json:
        echo_json(info)
        return
    click.echo(f"ok: {config.source}: {info['people']} people, {info['services']} services, "
               f"severity overrides: {', '.join(info['severities']) or 'none'}")
    click.echo(f"temporal {config.temporal.address} namespace {config.temporal.namespace} "
               f"task queue {config.temporal.task_queue}; store {info['db_url']}")


COMMANDS = [config_group]
