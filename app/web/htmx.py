"""One URL answers both a whole page and the fragment htmx asks for."""

from flask import Response, current_app, render_template, request


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def render_varying_on_htmx(template: str, **context) -> Response:
    """Render a page or a fragment of it: one URL answers both, so caches must tell them apart."""
    response = current_app.make_response(render_template(template, **context))
    response.vary.update(("HX-Request", "HX-Target"))
    return response
