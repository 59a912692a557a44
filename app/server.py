"""The HTTP server `make run` starts: `python -m app.server [gunicorn options]`.

gunicorn with the settings and worker in app/gunicorn_conf.py, serving on BIND (an environment
variable, default 127.0.0.1:5000). Options given on the command line, or in GUNICORN_CMD_ARGS,
override the settings (`--workers 4`). Its configuration module, app/server_conf.py, adds hooks
that record the running server in the database, where commands find it (app/servers.py). The
tests and benchmarks start the server through `command()`, so they run what `make run` runs.
"""
import os
import sys

DEFAULT_BIND = "127.0.0.1:5000"


def command(bind: str, app_spec: str = "app:create_app") -> list[str]:
    """The server's argv; `app_spec` names an app factory, `module:function`."""
    return [sys.executable, "-m", "gunicorn", "--config", "python:app.server_conf",
            "--bind", bind, f"{app_spec}()"]


def main() -> None:
    argv = command(os.environ.get("BIND") or DEFAULT_BIND)
    argv[-1:-1] = sys.argv[1:]  # options before the app
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
