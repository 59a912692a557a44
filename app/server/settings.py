"""gunicorn's configuration for the server app/server/__main__.py starts: every setting, with the
worker of app/server/worker.py and the access log of app/server/access_log.py; a hook in each
request that bounds a stalled response; two hooks in the master process that record the server in
the database (app/jobs/servers.py), so that commands sharing the database find where it listens;
and two in each worker process that start and stop its job runner (app/jobs/runner.py).
"""

import multiprocessing
import os
import socket


def _longest_send() -> float:
    from app import config

    settings = {**config.defaults(""), **config.from_environment()}
    return float(settings["MESSENTE_CONNECT_TIMEOUT"]) + float(settings["MESSENTE_READ_TIMEOUT"])


bind = "127.0.0.1:5000"
worker_class = "app.server.worker.WholeRequestWorker"
# The threads parse requests with gunicorn's pure-Python parser whatever else is installed (its
# optional C parser may frame a request differently from what RequestFraming checked).
http_parser = "python"
# gunicorn would otherwise make a control socket for `gunicornc` in ~/.gunicorn, outside the
# project; nothing here uses it (stop and reload with signals, docs/deploy.md).
control_socket_disable = True
# One process per CPU: each process commits its callbacks in one transaction per batch (group
# commit), so fewer processes make bigger batches and fewer commits taking turns on the write
# lock. Measured on 2 CPUs, same load: 2 x 32 stored about twice the callbacks a second of 4 x 16.
workers = multiprocessing.cpu_count()
# Threads run whole requests only, so they are free for requests that wait on another service
# (sending a reply can take seconds) without slow clients taking them. 64 in all on 2 CPUs.
threads = 32
worker_connections = 1000  # open connections per worker, idle and half-sent ones included
timeout = 30
# A restart lets a worker finish the sends in progress (connect plus read timeout) before it is
# killed, instead of leaving them unconfirmed; 10 s at least.
graceful_timeout = int(max(10, _longest_send() + 10))
keepalive = 5
# Request headers (and so signatures) are not in the default access log format.
accesslog = "-"
logger_class = "app.server.access_log.QuietPollsLogger"

# A client that stops reading its response (a large CSV export) for this long frees its thread.
SEND_STALL_SECONDS = 30.0

_recorded: dict = {}  # the app that wrote this server's row, and the row's id (the workers inherit it)


def pre_request(worker, req):
    """Sending the response times out after SEND_STALL_SECONDS without progress."""
    sock = getattr(req.unreader, "sock", None)
    if sock is not None:
        sock.settimeout(SEND_STALL_SECONDS)


def post_worker_init(worker):
    """Each worker process runs jobs (replies, the purge ...) from the start, not on a first request."""
    from flask import Flask

    from app.jobs import runner

    if isinstance(worker.wsgi, Flask):
        runner.start(worker.wsgi, _recorded.get("id"))


def worker_exit(server, worker):
    """Stopping: the running jobs finish (within graceful_timeout); no new one is taken."""
    from flask import Flask

    from app.jobs import runner

    if isinstance(getattr(worker, "wsgi", None), Flask):
        runner.stop(worker.wsgi, timeout=_longest_send() + 5)


def when_ready(server):
    """Listening, before the workers start: add this server's row, with the address it really got."""
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
