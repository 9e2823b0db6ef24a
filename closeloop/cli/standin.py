"""`closeloop standin jira|github`: serve one of the built-in stand-ins (closeloop/standins/) on a port, to
try the Jira or GitHub tracker without an account. State lives in memory; Ctrl-C stops it."""

from __future__ import annotations

import signal
import sys
import time

import click

from closeloop.cli._common import CliError


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, _, name = value.partition("=")
        if not key.strip():
            raise CliError(f"{what}: expected KEY or KEY=NAME, got {value!r}", exit_code=2)
        out[key.strip()] = name.strip() or key.strip()
    return out


@click.command("standin")
@click.argument("kind", type=click.Choice(["jira", "github"]))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--project", "projects", multiple=True, metavar="KEY[=NAME]",
              help="jira: a project (repeat; the first is the default) [default: CL].")
@click.option("--user", "users", multiple=True, metavar="ACCOUNT_ID[=NAME]",
              help="jira: an assignable user, i.e. a person's handles.jira (repeat).")
@click.option("--component", "components", multiple=True, metavar="PROJECT:NAME",
              help="jira: a component of a project (repeat).")
@click.option("--custom-field", "custom_fields", multiple=True, metavar="ID[=NAME]",
              help="jira: a custom field issues may set, e.g. customfield_10010 (repeat).")
@click.option("--repo", "repos", multiple=True, metavar="OWNER/NAME",
              help="github: a repository (repeat) [default: acme/ops].")
@click.option("--collaborator", "collaborators", multiple=True, metavar="LOGIN",
              help="github: an assignable login in every repository, i.e. a person's handles.github (repeat).")
@click.option("--milestone", "milestones", multiple=True, metavar="TITLE",
              help="github: a milestone in every repository, numbered 1, 2, ... in order (repeat).")
def standin(kind: str, port: int, projects: tuple[str, ...], users: tuple[str, ...], components: tuple[str, ...],
            custom_fields: tuple[str, ...], repos: tuple[str, ...], collaborators: tuple[str, ...],
            milestones: tuple[str, ...]) -> None:
    """Serve a Jira Cloud or GitHub REST stand-in on 127.0.0.1, for trying the trackers without accounts.

    It answers the part of the API closeloop uses, keeps everything in memory, accepts any credentials,
    and prints the config section that points closeloop at it.

    \b
    Examples:
      closeloop standin jira --port 8081 --project CL --project PAY=Payments --user acc-bob=Bob \\
          --component PAY:checkout-api --custom-field customfield_10010=Team
      closeloop standin github --port 8082 --repo acme/ops --repo acme/checkout \\
          --collaborator bob-gh --milestone "Postmortem follow-ups"
    """
    from closeloop.standins.github import GitHubStandin
    from closeloop.standins.jira import JiraStandin

    server: JiraStandin | GitHubStandin
    try:
        if kind == "jira":
            keys = _pairs(projects or ("CL",), "--project")
            per_project: dict[str, list[str]] = {}
            for value in components:
                project, _, name = value.partition(":")
                if project not in keys or not name:
                    raise CliError(f"--component: expected PROJECT:NAME with a --project key, got {value!r}",
                                   exit_code=2)
                per_project.setdefault(project, []).append(name)
            (first, first_name), *others = keys.items()
            server = JiraStandin(project=first, project_name=first_name, projects=dict(others),
                                 users=_pairs(users, "--user"), components=per_project,
                                 custom_fields=_pairs(custom_fields, "--custom-field"), port=port)
            section = f'[trackers.jira]\nurl = "{server.url}"\nproject = "{first}"'
            what = f"projects {', '.join(keys)}; users {', '.join(_pairs(users, '--user')) or '(none)'}"
        else:
            names = list(dict.fromkeys(repos or ("acme/ops",)))
            for name in names:
                if name.count("/") != 1 or not all(name.split("/")):
                    raise CliError(f"--repo: expected OWNER/NAME, got {name!r}", exit_code=2)
            server = GitHubStandin(port=port)
            for name in names:
                server.add_repo(name, collaborators=list(collaborators),
                                milestones={n: title for n, title in enumerate(milestones, start=1)})
            section = f'[trackers.github]\nbase_url = "{server.base_url}"\nrepo = "{names[0]}"'
            what = f"repositories {', '.join(names)}; collaborators {', '.join(collaborators) or '(none)'}"
    except OSError as e:
        raise CliError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as cleanly as on Ctrl-C
    click.echo(f"{kind} stand-in on {server.url} ({what}). State is in memory; Ctrl-C stops it.")
    click.echo("Point closeloop at it (any credentials are accepted):\n")
    click.echo(section + "\n", nl=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


COMMANDS = [standin]
