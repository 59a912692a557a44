"""The HTTP server `make run` starts: `python -m app.server [gunicorn options]`.

gunicorn with the settings in app/server/settings.py (the worker of app/server/worker.py, the access
log of app/server/access_log.py), serving on BIND (an environment variable, default 127.0.0.1:5000).
Options given on the command line, or in GUNICORN_CMD_ARGS, override the settings (`--workers 4`).
The settings' hooks record the running server in the database, where commands find it
(app/jobs/servers.py). The
tests and benchmarks start the server through `command()`, so they run what `make run` runs.
"""

import sys

DEFAULT_BIND = "127.0.0.1:5000"


def command(bind: str, app_spec: str = "app:create_app") -> list[str]:
    """The server's argv; `app_spec` names an app factory, `module:function`."""
    return [sys.executable, "-m", "gunicorn", "--config", "python:app.server.settings", "--bind", bind, f"{app_spec}()"]
