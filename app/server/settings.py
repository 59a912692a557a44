"""gunicorn's configuration for the server app/server/__main__.py starts: every setting and the worker of
app/server/worker.py, two hooks in the master process that record the server in the database
(app/jobs/servers.py), so that commands sharing the database find where it listens, and two in each
worker process that start and stop its job runner (app/jobs/runner.py).
"""

import os
import socket

from app.server import worker
from app.server.worker import *  # noqa: F403 (gunicorn reads the settings from this module)

# Hooks app/server/worker.py may define itself still run, before ours.
_inherited = {
    name: getattr(worker, name, None) for name in ("when_ready", "on_exit", "post_worker_init", "worker_exit")
}
_recorded: dict = {}  # the app that wrote this server's row, and the row's id (the workers inherit it)


def _longest_send() -> float:
    from app import config

    settings = {**config.defaults(""), **config.from_environment()}
    return float(settings["MESSENTE_CONNECT_TIMEOUT"]) + float(settings["MESSENTE_READ_TIMEOUT"])


# A restart lets a worker finish the sends in progress (connect plus read timeout) before it is
# killed, instead of leaving them unconfirmed.
graceful_timeout = int(max(getattr(worker, "graceful_timeout", 30), _longest_send() + 10))


def post_worker_init(worker):
    """Each worker process runs jobs (replies, the purge ...) from the start, not on a first request."""
    if _inherited["post_worker_init"]:
        _inherited["post_worker_init"](worker)
    from flask import Flask

    from app.jobs import runner

    if isinstance(worker.wsgi, Flask):
        runner.start(worker.wsgi, _recorded.get("id"))


def worker_exit(server, worker):
    """Stopping: the running jobs finish (within graceful_timeout); no new one is taken."""
    if _inherited["worker_exit"]:
        _inherited["worker_exit"](server, worker)
    from flask import Flask

    from app.jobs import runner

    if isinstance(getattr(worker, "wsgi", None), Flask):
        runner.stop(worker.wsgi, timeout=_longest_send() + 5)


def when_ready(server):
    """Listening, before the workers start: add this server's row, with the address it really got."""
    if _inherited["when_ready"]:
        _inherited["when_ready"](server)
    binds = [
        listening_address(listener.sock)
        for listener in server.LISTENERS
        if listener.sock.family in (socket.AF_INET, socket.AF_INET6)
    ]
    if not binds:
        return  # a Unix socket only: a proxy in front has PUBLIC_URL
    from app import create_app
    from app.extensions import db
    from app.jobs import servers

    # PostgreSQL out of reach must not keep the server from starting (libpq waits for ever).
    no_connect_timeout = "PGCONNECT_TIMEOUT" not in os.environ
    if no_connect_timeout:
        os.environ["PGCONNECT_TIMEOUT"] = "5"
    try:
        app = create_app()
        with app.app_context():
            try:
                _recorded.update(app=app, id=servers.record(binds[0], app.config["PUBLIC_URL"]))
            finally:
                db.engine.dispose()  # no connection of the master's is open when the workers fork
    except Exception as exc:  # it serves all the same; commands fall back to BIND
        server.log.warning(
            "Could not record this server in the database, so commands will not find it: %s", str(exc).splitlines()[0]
        )
    finally:
        if no_connect_timeout:
            del os.environ["PGCONNECT_TIMEOUT"]  # the workers' own connections as configured


def on_exit(server):
    """Stopping cleanly: delete this server's row."""
    if _inherited["on_exit"]:
        _inherited["on_exit"](server)
    if not _recorded:
        return
    from app.extensions import db
    from app.jobs import servers

    try:
        with _recorded["app"].app_context():
            try:
                servers.remove(_recorded["id"])
            finally:
                db.engine.dispose()
    except Exception as exc:  # the row stays; once the process is gone it is not live
        server.log.warning("Could not delete this server's row: %s", str(exc).splitlines()[0])


def listening_address(sock: socket.socket) -> str:
    """host:port as BIND is written ([host]:port for IPv6)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
