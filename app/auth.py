"""Login and logout; every other page and fragment requires a login (deny by default)."""
import time
from urllib.parse import urlsplit

from flask import (Blueprint, current_app, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from . import accounts
from .extensions import db, login_manager
from .models import USERNAME_LENGTH

bp = Blueprint("auth", __name__)

# Everything else needs a login; the callback authenticates by signature instead.
PUBLIC_ENDPOINTS = {"auth.login", "static"}


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_LENGTH)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)]
    )


@login_manager.user_loader
def load_user(session_id: str):
    return accounts.load_session_user(session_id)


@login_manager.unauthorized_handler
def unauthorized():
    login_url = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        # Never swap the login page into a fragment: send the whole window there.
        page = urlsplit(request.headers.get("HX-Current-URL", "")).path or "/"
        return "", 401, {"HX-Redirect": url_for("auth.login", next=page)}
    return redirect(login_url)


@bp.before_app_request
def require_login():
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.blueprint == "callback":
        return None
    if not current_user.is_authenticated:
        return unauthorized()

    now = time.time()
    if now - session.get("last_active", 0) > current_app.config["IDLE_TIMEOUT_SECONDS"]:
        logout_user()
        session.clear()
        return unauthorized()
    if "since" not in request.args:  # background polls don't count as activity
        session["last_active"] = now
    return None


def local_path(target: str | None) -> str | None:
    """`next` only to a path on this site: no scheme, no host, no `//` or `\\` tricks."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_page = local_path(request.args.get("next")) or url_for("inbox.index")
    if current_user.is_authenticated:
        return redirect(next_page)

    form = LoginForm()
    error = None
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.username.data, form.password.data)
        except accounts.LoginLocked as locked:
            error = (f"Too many failed attempts: this login is locked until "
                     f"{locked.until:%H:%M} UTC. Try again then.")
        else:
            if user is not None:
                session.clear()  # a fresh session at every login
                login_user(user)
                session["last_active"] = time.time()
                db.session.commit()
                return redirect(next_page)
            error = "Invalid username or password."
        db.session.commit()
    status = 200 if error is None else 401
    return render_template("auth/login.html", form=form, error=error), status


@bp.post("/logout")
def logout():
    accounts.end_sessions(current_user)
    db.session.commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))
