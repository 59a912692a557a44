"""`python -m app.server [gunicorn options]`: the server `make run` starts (see app/server/__init__.py)."""

import os
import sys

from app.server import DEFAULT_BIND, command


def main() -> None:
    argv = command(os.environ.get("BIND") or DEFAULT_BIND)
    argv[-1:-1] = sys.argv[1:]  # options before the app
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
