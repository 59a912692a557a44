"""The admin's Webhooks page: subscribe a URL (its secret shown once), rotate the secret, turn an
endpoint off and on, delete it, and see its recent deliveries with "Send again"."""

from flask import Blueprint, abort, redirect, render_template, request, url_for

from app import clock
from app.db.models import WEBHOOK_URL_LENGTH
from app.web.access import admin_required
from app.web.request_args import LARGEST_ID
from app.webhooks import EVENT_TYPES, endpoints

bp = Blueprint("webhooks", __name__, url_prefix="/admin/webhooks")
ENDPOINT = "<int:endpoint_id>"  # an INTEGER id


@bp.context_processor
def admin_banners() -> dict:
    """What every admin page's banners ask (templates/admin/_nav.html)."""
    from app.jobs import runner

    return {
        "no_runner_alive": lambda: not runner.runners_alive(clock.now()),
        "failing_webhooks": endpoints.turned_off_for_failing,
    }


@bp.get("")
@admin_required
def page(error: str | None = None, secret: str | None = None, secret_for: int | None = None, status: int = 200):
    shown = endpoints.listing()
    return render_template(
        "admin/webhooks.html",
        endpoints=shown,
        deliveries={endpoint.id: endpoints.recent_deliveries(endpoint.id) for endpoint in shown},
        event_types=EVENT_TYPES,
        error=error,
        secret=secret,
        secret_for=secret_for,
        # A refused form comes back as it was typed; a new one has every event ticked.
        chosen=request.form.getlist("events") if error else list(EVENT_TYPES),
        url=request.form.get("url", "") if error else "",
        url_length=WEBHOOK_URL_LENGTH,
        now=clock.now(),
    ), status


@bp.post("")
@admin_required
def create():
    try:
        endpoint, secret = endpoints.create_endpoint(request.form.get("url", ""), request.form.getlist("events"))
    except ValueError as refused:
        return page(error=str(refused), status=400)
    return page(secret=secret, secret_for=endpoint.id)


@bp.post(f"/{ENDPOINT}/rotate")
@admin_required
def rotate(endpoint_id: int):
    try:
        secret = endpoints.rotate_secret(endpoint_id)
    except LookupError:
        abort(404)
    return page(secret=secret, secret_for=endpoint_id)


@bp.post(f"/{ENDPOINT}/enabled")
@admin_required
def enabled(endpoint_id: int):
    try:
        endpoints.set_enabled(endpoint_id, request.form.get("on") == "1")
    except LookupError:
        abort(404)
    return redirect(url_for("webhooks.page", _anchor=f"endpoint-{endpoint_id}"), 303)


@bp.post(f"/{ENDPOINT}/delete")
@admin_required
def delete(endpoint_id: int):
    if not endpoints.delete_endpoint(endpoint_id):
        abort(404)
    return redirect(url_for("webhooks.page"), 303)


@bp.post(f"/{ENDPOINT}/deliveries/<int(max={LARGEST_ID}):delivery_id>/send-again")
@admin_required
def send_again(endpoint_id: int, delivery_id: int):
    if not endpoints.send_again(endpoint_id, delivery_id):
        abort(404)
    return redirect(url_for("webhooks.page", _anchor=f"endpoint-{endpoint_id}"), 303)
