"""`closeloop standin jira|github|oidc`: serve one of the built-in stand-ins (closeloop/standins/) on a port, to
try the Jira or GitHub tracker without an account, or the web app's sign-in without an identity provider. State
lives in memory; Ctrl-C stops it."""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from closeloop.cli._common import CliError, Context, pass_ctx

OIDC_SECRET_ENV = "CLOSELOOP_OIDC_CLIENT_SECRET"


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, _, name = value.partition("=")
        if not key.strip():
            raise CliError(f"{what}: expected KEY or KEY=NAME, got {value!r}", exit_code=2)
        out[key.strip()] = name.strip() or key.strip()
    return out


@click.command("standin")
@click.argument("kind", type=click.Choice(["jira", "github", "oidc"]))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--project", "projects", multiple=True, metavar="KEY[=NAME]",
              help="jira: a project (repeat; the first is the default) [default: CL].")
@click.option("--user", "users", multiple=True, metavar="ACCOUNT_ID[=NAME]",
              help="jira: an assignable user, i.e. a person's handles.jira (repeat). oidc: EMAIL[=NAME], a person "
                   "who may sign in (repeat) [default: the config's [people]].")
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
@click.option("--client-id", default="closeloop", show_default=True,
              help=f"oidc: the web app's client id (its secret comes from ${OIDC_SECRET_ENV}).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, metavar="URI",
              help="oidc: a redirect URI the client may use, compared exactly (repeat; at least one).")
@click.option("--claims", type=click.Choice(["standard", "entra"]), default="standard", show_default=True,
              help="oidc: the ID token's claims: standard (email, email_verified, name) or Entra ID's v2.0 "
                   "(preferred_username, name, oid, tid; no email).")
@pass_ctx
def standin(obj: Context, kind: str, port: int, projects: tuple[str, ...], users: tuple[str, ...],
            components: tuple[str, ...], custom_fields: tuple[str, ...], repos: tuple[str, ...],
            collaborators: tuple[str, ...], milestones: tuple[str, ...], client_id: str,
            redirect_uris: tuple[str, ...], claims: str) -> None:
    """Serve a Jira Cloud or GitHub REST stand-in, or an OpenID Connect provider, on 127.0.0.1.

    The trackers' stand-ins answer the part of the API closeloop uses, keep everything in memory, accept any
    credentials, and print the config section that points closeloop at them. The OpenID Connect provider
    signs in the people of the config's [people] (or --user) through a sign-in page asking only for an email;
    the client secret is $CLOSELOOP_OIDC_CLIENT_SECRET.

    \b
    Examples:
      closeloop standin jira --port 8081 --project CL --project PAY=Payments --user acc-bob=Bob \\
          --component PAY:checkout-api --custom-field customfield_10010=Team
      closeloop standin github --port 8082 --repo acme/ops --repo acme/checkout \\
          --collaborator bob-gh --milestone "Postmortem follow-ups"
      CLOSELOOP_OIDC_CLIENT_SECRET=dev-secret closeloop standin oidc --port 8083 \\
          --redirect-uri http://127.0.0.1:8000/auth/callback --user alice@example.com=Alice
    """
    from closeloop.standins.github import GitHubStandin
    from closeloop.standins.jira import JiraStandin
    from closeloop.standins.oidc import ClientReg, OidcProvider

    server: JiraStandin | GitHubStandin | OidcProvider
    try:
        if kind == "oidc":
            secret = os.environ.get(OIDC_SECRET_ENV, "")
            if not secret:
                raise CliError(f"oidc: set {OIDC_SECRET_ENV} to the client secret the web app uses", exit_code=2)
            if not redirect_uris:
                raise CliError("oidc: give the web app's callback with --redirect-uri", exit_code=2)
            people = _pairs(users, "--user") if users else \
                {p.email: p.name for p in obj.config().people.values()}
            if not people:
                raise CliError("oidc: nobody could sign in: give --user EMAIL[=NAME] or [people] in the config",
                               exit_code=2)
            try:
                server = OidcProvider(clients={client_id: ClientReg(secret, list(redirect_uris))}, users=people,
                                      port=port, claims="entra" if claims == "entra" else "standard")
            except ValueError as e:
                raise CliError(f"--redirect-uri: {e}", exit_code=2) from None
            section = (f'issuer = "{server.issuer}"\nclient_id = "{client_id}"\n'
                       + ('email_claim = "preferred_username"\n' if claims == "entra" else "")
                       + f"# the client secret is ${OIDC_SECRET_ENV}; discovery: {server.discovery_url}")
            what = f"client {client_id}; users {', '.join(sorted(server.users))}"
        elif kind == "jira":
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
    click.echo("Point the web app's sign-in at it:\n" if kind == "oidc" else
               "Point closeloop at it (any credentials are accepted):\n")
    click.echo(section + "\n", nl=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


COMMANDS = [standin]
