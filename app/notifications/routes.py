"""The notifications page (newest first, each opening its conversation), marking them read, and
the bell in the site's header that every page shows."""

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

from app import notifications
from app.web.request_args import LARGEST_ID, id_arg

bp = Blueprint("notifications", __name__)


@bp.get("/notifications")
def index():
    entries, older = notifications.page_of(current_user.id, before=id_arg("before"))
    return render_template(
        "notifications/index.html", entries=entries, older=older, before=id_arg("before"), kinds=notifications.KINDS
    )


@bp.post(f"/notifications/<int(max={LARGEST_ID}):notification_id>/read")  # a BIGINT id
def mark_read(notification_id: int):
    notifications.mark_read(current_user.id, notification_id)
    return redirect(url_for("notifications.index"), 303)


@bp.post("/notifications/read")
def mark_all_read():
    notifications.mark_all_read(current_user.id)
    return redirect(url_for("notifications.index"), 303)


@bp.app_template_global()
def unread_notifications() -> int:
    """The bell's count for the person signed in."""
    return notifications.unread_count(current_user.id) if current_user.is_authenticated else 0


@bp.app_template_global()
def newest_notification() -> notifications.Entry | None:
    return notifications.newest_unread(current_user.id) if current_user.is_authenticated else None
