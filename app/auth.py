"""Login and logout; every other page and fragment requires a login (deny by default), and
admin pages an admin (`admin_required`)."""
import functools
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from . import accounts, audit, clock
from .extensions import login_manager
from .models import USERNAME_LENGTH

bp = Blueprint("auth", __name__)


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
    checked.admin_only = True
    return checked


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_LENGTH)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)]
    )


class SetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)])
    confirm = PasswordField("New password again", validators=[DataRequired()])

    def problem(self) -> str | None:
        if self.password.data != self.confirm.data:
            return "The two passwords do not match."
        try:
            accounts.check_password(self.password.data)
        except ValueError as exc:
            return str(exc)
        return None


class ChangePasswordForm(SetPasswordForm):
    current = PasswordField("Current password", validators=[DataRequired()])


@login_manager.user_loader
def load_user(session_id: str):
    return accounts.load_session_user(session_id)


@login_manager.unauthorized_handler
def unauthorized():
    if request.headers.get("HX-Request"):
        # Never swap the login page into a fragment: send the whole window there, and back
        # to the page it showed (not the fragment's URL) after logging in.
        page = path_and_query(request.headers.get("HX-Current-URL"))
        return "", 401, {"HX-Redirect": url_for("auth.login", next=page)}
    if request.method in ("GET", "HEAD"):
        page = request.full_path.rstrip("?")
    else:  # a form posted after the session ended: back to the page the form was on
        page = path_and_query(request.referrer)
    return redirect(url_for("auth.login", next=page))


def path_and_query(url: str | None) -> str:
    """The path and query of a URL this site's page gave us, for `next` (checked at login)."""
    parts = urlsplit(url or "")
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def is_public() -> bool:
    if request.endpoint is None or request.endpoint == "static" or request.blueprint == "callback":
        return True
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, "public", False)


@bp.before_app_request
def require_login():
    if is_public():
        return None
    if not current_user.is_authenticated:
        return unauthorized()

    config, now = current_app.config, clock.timestamp()
    idle = now - session.get("last_active", 0) > config["IDLE_TIMEOUT_SECONDS"]
    # Sessions from before the absolute lifetime existed have no start: they end now.
    too_old = now - session.get("started", 0) > config["SESSION_LIFETIME_SECONDS"]
    if idle or too_old:
        logout_user()
        session.clear()
        return unauthorized()
    if "since" not in request.args:  # background polls don't count as activity
        session["last_active"] = now
    return None


@bp.after_app_request
def no_store(response):
    """Pages and fragments (logged-in ones, the login page, redirects) never go into a cache:
    not a shared computer's back button, not a proxy. Static files and the callback's JSON
    keep their own caching."""
    if request.endpoint != "static" and request.blueprint != "callback":
        response.headers["Cache-Control"] = "no-store"
    return response


def local_path(target: str | None) -> str | None:
    """`next` only to a path on this site: no scheme, no host, no `//` or `\\` tricks."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return None
    return target


def wait_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{-(-seconds // 60)} minutes"


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    next_page = local_path(request.args.get("next")) or url_for("inbox.index")
    if current_user.is_authenticated:
        return redirect(next_page)

    form = LoginForm()
    error, headers = None, {}
    if form.validate_on_submit():
        try:
            # The socket's address, or the X-Forwarded-For hop PROXY_COUNT trusts (ProxyFix).
            user = accounts.authenticate(form.username.data, form.password.data, request.remote_addr)
        except accounts.LoginLocked as locked:
            seconds = accounts.retry_after_seconds(locked.until)
            error = (f"Too many failed attempts: logging in from here is locked for "
                     f"{wait_text(seconds)}. Try again then.")
            headers["Retry-After"] = str(seconds)
        else:
            if user is not None:
                session.clear()  # a fresh session at every login
                accounts.start_session(user, request.remote_addr, request.user_agent.string)
                login_user(user)
                session["started"] = session["last_active"] = clock.timestamp()
                audit.record("login", username=user.username)
                return redirect(next_page)
            # Tried names are kept (a typo'd password is no secret); passwords never are.
            audit.record("login_failed", {"username": form.username.data.strip()[:80]}, username=None)
            error = "Invalid username or password."
    status = 200 if error is None else 401
    return render_template("auth/login.html", form=form, error=error), status, headers


@bp.post("/logout")
def logout():
    """Ends this session only; "Sign out everywhere" (account pages) ends the others too."""
    audit.record("logout")
    accounts.end_session(current_user)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.app_errorhandler(403)
def forbidden(exc):
    return render_template("errors/403.html"), 403


# --- one's own account --------------------------------------------------------------------

@bp.get("/account")
def account(form: ChangePasswordForm | None = None, message: str | None = None, error: str | None = None,
            status: int = 200):
    return render_template("account/account.html", form=form or ChangePasswordForm(formdata=None),
                           sessions=accounts.sessions_of(current_user),
                           this_session=accounts.token_hash(current_user.login_token or ""),
                           message=message, error=error), status


@bp.post("/account/password")
def change_password():
    form = ChangePasswordForm()
    error = form.problem() if form.validate_on_submit() else "Fill in all three fields."
    if error is None:
        try:
            accounts.change_password(current_user, form.current.data, form.password.data,
                                     keep_token=current_user.login_token)
        except ValueError as exc:
            error = str(exc)
    if error is not None:
        return account(ChangePasswordForm(formdata=None), error=error, status=400)
    audit.record("password_changed")
    return account(message="Your password is changed. Your other sessions have ended.")


@bp.post("/account/sessions/<int(max=%d):session_id>/end" % (2**63 - 1))  # a BIGINT id
def end_session(session_id: int):
    accounts.end_session(current_user, session_id)
    audit.record("sessions_ended", {"user": current_user.username, "sessions": "one"})
    return redirect(url_for("auth.account"), 303)


@bp.post("/account/sessions/end-all")
def sign_out_everywhere():
    audit.record("sessions_ended", {"user": current_user.username, "sessions": "all"})
    accounts.end_sessions(current_user)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"), 303)


# --- one-time links to set a password (public: the token is the credential) ---------------

@bp.route("/set-password/<token>", methods=["GET", "POST"])
@public
def set_password(token: str):
    user = accounts.user_for_reset_token(token)
    if user is None:
        return render_template("auth/set_password.html", form=None), 404
    form, error = SetPasswordForm(), None
    if form.validate_on_submit():
        error = form.problem()
        if error is None:
            user = accounts.set_password_with_link(token, form.password.data)
            if user is None:  # used or expired meanwhile
                return render_template("auth/set_password.html", form=None), 404
            audit.record("password_set", {"user": user.username}, username=user.username)
            if current_user.is_authenticated:
                logout_user()
            session.clear()
            return redirect(url_for("auth.login", set="1"), 303)
    elif request.method == "POST":
        error = "Fill in both fields."
    return render_template("auth/set_password.html", form=form, user=user, error=error), 200 if error is None else 400
