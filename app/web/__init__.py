"""What every page shares: error pages, htmx helpers, template filters, access decorators,
fingerprinted static files and security headers. Plumbing: it imports no feature."""

from flask import Flask

from app.web import errors, filters, headers, static_files


def init_app(app: Flask) -> None:
    errors.init_app(app)
    filters.init_app(app)
    headers.init_app(app)
    static_files.init_app(app)
