"""Who may use a view: every view needs a login unless marked `public`; `admin_required` ones
refuse agents. The login check itself runs before every request (app/accounts/routes.py)."""

import functools

from flask import abort
from flask_login import current_user

# Paths that authenticate by their own tokens (app/api), never by the session: open to the login
# check, and an API request never loads the session's user.
TOKEN_PATHS = ("/api/",)


def public(view):
    """Mark a view as open to anonymous visitors; every other view requires a login.

    The callback blueprint is public as a whole: it authenticates by signature instead.
    """
    view.public = True
    return view


def admin_required(view):
    """Only admins may use this view; others (logged in: the login check comes first) get 403.

    Marked `admin_only`, so tests can walk the URL map and check every such view refuses agents.
    """

    @functools.wraps(view)
    def checked(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    vars(checked)["admin_only"] = True  # a function attribute, which mypy has no declaration for
    return checked
