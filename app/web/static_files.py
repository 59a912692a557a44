"""Static files under URLs that name their version, cached for a year."""

import hashlib
from pathlib import Path

from flask import Flask, request

# A fingerprinted static URL names one version of the file for ever: cache it for a year.
IMMUTABLE = "public, max-age=31536000, immutable"


def init_app(app: Flask) -> None:
    """`url_for('static', ...)` adds `v=<sha256 prefix of the file>`, and a response to a URL
    whose `v` is the file's own is cached for a year: a repeat visit fetches no static file,
    and a changed file gets a new URL. Hashed once, at start-up (static files ship with the code).
    """
    folder = Path(str(app.static_folder))
    versions = {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in folder.rglob("*")
        if path.is_file()
    }

    @app.url_defaults
    def add_version(endpoint, values):
        if endpoint == "static" and "v" not in values and values.get("filename") in versions:
            values["v"] = versions[values["filename"]]

    @app.after_request
    def cache_fingerprinted(response):
        if (
            request.endpoint == "static"
            and response.status_code in (200, 304)
            and request.args.get("v", "") == versions.get((request.view_args or {}).get("filename", ""))
        ):
            response.headers["Cache-Control"] = IMMUTABLE
        return response
