"""Login and logout; every other page and fragment requires a login (deny by default), and
admin pages an admin (`admin_required`)."""

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from app import audit, clock, notifications
from app.accounts import passwords, sessions, throttle, two_factor, users
from app.contacts import owners
from app.db.models import USERNAME_LENGTH, User
from app.extensions import login_manager
from app.web.access import TOKEN_PATHS, public

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_LENGTH)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=passwords.MAX_PASSWORD_LENGTH)])


class SetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=passwords.MAX_PASSWORD_LENGTH)])
    confirm = PasswordField("New password again", validators=[DataRequired()])

    def problem(self) -> str | None:
        if self.password.data != self.confirm.data:
            return "The two passwords do not match."
        try:
            passwords.check_password(self.password.data)
        except ValueError as exc:
            return str(exc)
        return None


class ChangePasswordForm(SetPasswordForm):
    current = PasswordField("Current password", validators=[DataRequired()])


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=64)])


class ConfirmForm(FlaskForm):
    """Changes to one's two-factor sign-in: a current code, a backup code or the password."""

    secret = PasswordField(
        "Your current code or your password", validators=[DataRequired(), Length(max=passwords.MAX_PASSWORD_LENGTH)]
    )


@login_manager.user_loader
def load_user(session_id: str):
    return sessions.load_session_user(session_id)


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
    if request.path.startswith(TOKEN_PATHS):  # the API checks its own tokens (app/api/routes.py)
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
    if session.get("set_up_two_factor") and request.endpoint not in SETUP_ONLY:
        # Two-factor sign-in is required and this person has none yet: nothing else until then.
        setup = url_for("auth.two_factor_setup")
        if request.headers.get("HX-Request"):
            return "", 204, {"HX-Redirect": setup}
        return redirect(setup)
    return None


# What a person who must set up two-factor sign-in may do before they have.
SETUP_ONLY = {"auth.two_factor_setup", "auth.logout"}


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


def locked_message(locked: throttle.LoginLocked) -> tuple[str, dict[str, str]]:
    seconds = throttle.retry_after_seconds(locked.until)
    if locked.kind == "account":
        text = (
            f"Too many failed attempts for this account: logging in to it from a new device is "
            f"locked for {wait_text(seconds)}. A browser that has logged in to it before still can."
        )
    else:
        text = f"Too many failed attempts: logging in from here is locked for {wait_text(seconds)}. Try again then."
    return text, {"Retry-After": str(seconds)}


def device_for(username: str) -> str | None:
    """The device this browser is for `username`, by its device cookie (None: unknown)."""
    return throttle.device_of(username, request.cookies.get(throttle.device_cookie_name(username)))


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    next_page = local_path(request.args.get("next")) or url_for("inbox.index")
    if current_user.is_authenticated:
        return redirect(next_page)

    form = LoginForm()
    error: str | None = None
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        try:
            # The socket's address, or the X-Forwarded-For hop PROXY_COUNT trusts (ProxyFix).
            user = throttle.authenticate(
                form.username.data, form.password.data, request.remote_addr, device_for(form.username.data)
            )
        except throttle.LoginLocked as locked:
            error, headers = locked_message(locked)
        else:
            if user is not None and user.totp_secret:
                # Half logged in: the password was right, the code is still to come.
                session.clear()
                session["second_step"] = {
                    "user": user.id,
                    "next": next_page,
                    "until": clock.timestamp() + current_app.config["LOGIN_CODE_SECONDS"],
                }
                return redirect(url_for("auth.login_code"))
            if user is not None:
                return finish_login(user, next_page)
            # Tried names are kept (a typo'd password is no secret); passwords never are.
            audit.record("login_failed", {"username": form.username.data.strip()[:80]}, username=None)
            error = "Invalid username or password."
    status = 200 if error is None else 401
    return render_template("accounts/login.html", form=form, error=error), status, headers


@bp.route("/login/code", methods=["GET", "POST"])
@public
def login_code():
    """The second step for people with two-factor sign-in: a code from their app, or a backup code."""
    if current_user.is_authenticated:
        return redirect(url_for("inbox.index"))
    pending = session.get("second_step") or {}
    user = users.user_by_id(pending["user"]) if pending else None
    if user is None or user.disabled or not user.totp_secret or clock.timestamp() > pending["until"]:
        session.pop("second_step", None)
        return redirect(url_for("auth.login", again="1"))

    form = CodeForm()
    error: str | None = None
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        try:
            used = throttle.check_second_factor(user, form.code.data, request.remote_addr, device_for(user.username))
        except throttle.LoginLocked as locked:
            error, headers = locked_message(locked)
        else:
            if used is not None:
                return finish_login(user, pending["next"])
            audit.record("login_failed", {"username": user.username, "step": "code"}, username=None)
            error = "That code is not right. Codes change every 30 seconds: try the one your app shows now."
    elif request.method == "POST":
        error = "Enter the code."
    status = 200 if error is None else 401
    return render_template("accounts/code.html", form=form, error=error), status, headers


def finish_login(user: User, next_page: str):
    """A full login: a fresh session, and a new device cookie that makes this browser known."""
    session.clear()  # a fresh session at every login
    sessions.start_session(user, request.remote_addr, request.user_agent.string)
    login_user(user)
    session["started"] = session["last_active"] = clock.timestamp()
    if not user.totp_secret and two_factor.required():
        session["set_up_two_factor"] = True
        next_page = url_for("auth.two_factor_setup")
    response = redirect(next_page)
    config = current_app.config
    # Sent only to the login pages, never readable by scripts or sent by other sites.
    response.set_cookie(
        throttle.device_cookie_name(user.username),
        throttle.new_device_cookie(user.username),
        max_age=config["DEVICE_COOKIE_SECONDS"],
        path=url_for("auth.login"),
        secure=config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.post("/logout")
def logout():
    """Ends this session only; "Sign out everywhere" (account pages) ends the others too."""
    sessions.log_out(current_user)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


# --- one's own account --------------------------------------------------------------------


@bp.get("/account")
def account(
    form: ChangePasswordForm | None = None, message: str | None = None, error: str | None = None, status: int = 200
):
    return render_template(
        "accounts/account.html",
        form=form or ChangePasswordForm(formdata=None),
        sessions=sessions.sessions_of(current_user),
        this_session=passwords.token_hash(current_user.login_token or ""),
        confirm_form=ConfirmForm(formdata=None),
        backup_codes_left=two_factor.backup_codes_left(current_user),
        two_factor_required=two_factor.required(),
        notification_choices=notifications.CHOICES,
        notifications_on=notifications.kinds_on(current_user.id),
        message=message,
        error=error,
    ), status


@bp.post("/account/password")
def change_password():
    form = ChangePasswordForm()
    error = form.problem() if form.validate_on_submit() else "Fill in all three fields."
    if error is None:
        try:
            users.change_password(
                current_user, form.current.data, form.password.data, keep_token=current_user.login_token
            )
        except ValueError as exc:
            error = str(exc)
    if error is not None:
        return account(ChangePasswordForm(formdata=None), error=error, status=400)
    return account(message="Your password is changed. Your other sessions have ended.")


@bp.post(f"/account/sessions/<int(max={2**63 - 1}):session_id>/end")  # a BIGINT id
def end_session(session_id: int):
    sessions.end_session(current_user, session_id)
    return redirect(url_for("auth.account"), 303)


@bp.post("/account/sessions/end-all")
def sign_out_everywhere():
    sessions.end_sessions(current_user)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"), 303)


@bp.post("/account/notifications")
def notification_choices():
    """Which kinds of notification the person gets: a checkbox each, all on until they say."""
    notifications.set_kinds_on(current_user.id, set(request.form.getlist("kind")))
    return account(message="Your notification choices are saved.")


@bp.post("/account/shift")
def shift():
    """The "On shift" switch in the site's bar: on, or off (and, if asked, one's open
    conversations back to Unassigned). Back to the page it was on."""
    owners.set_on_shift(
        current_user.id, request.form.get("on_shift") == "1", release=request.form.get("release") == "1"
    )
    return redirect(local_path(request.form.get("next")) or url_for("inbox.index"), 303)


@bp.app_context_processor
def shift_switch() -> dict:
    """What the switch offers: how many open conversations going off shift would return."""

    def open_conversations() -> int:
        return owners.open_conversations(current_user.id) if current_user.is_authenticated else 0

    return {"own_open_conversations": open_conversations}


# --- one's own two-factor sign-in -----------------------------------------------------------


@bp.route("/account/two-factor", methods=["GET", "POST"])
def two_factor_setup():
    """Turn on two-factor sign-in: a new key (kept in the session until confirmed), shown as a
    QR code and as text, takes effect once a code made from it is entered."""
    if current_user.totp_secret:
        return redirect(url_for("auth.account"))
    key = session.setdefault("new_totp_key", two_factor.new_key())
    form, error = CodeForm(), None
    if form.validate_on_submit():
        codes = two_factor.turn_on(current_user, key, form.code.data)
        if codes is not None:
            session.pop("new_totp_key", None)
            session.pop("set_up_two_factor", None)
            return render_template("accounts/backup_codes.html", codes=codes, new=True)
        error = "That code is not right. Check the key in your app, then enter the code it shows now."
    elif request.method == "POST":
        error = "Enter the code from your app."
    return render_template(
        "accounts/two_factor.html",
        form=CodeForm(formdata=None),
        error=error,
        key=two_factor.grouped(key),
        qr_code=two_factor.qr_code(key, current_user.username),
        required=session.get("set_up_two_factor", False),
    ), 200 if error is None else 400


def confirmed_by_person(form: ConfirmForm) -> str | None:
    """None when the form carries a right code or password; else what to tell the person."""
    if not form.validate_on_submit():
        return "Enter your current code or your password."
    try:
        if throttle.confirm_identity(current_user, form.secret.data, request.remote_addr):
            return None
    except throttle.LoginLocked as locked:
        return locked_message(locked)[0]
    return "That is neither your current code nor your password."


@bp.post("/account/two-factor/off")
def two_factor_off():
    if not current_user.totp_secret:
        return redirect(url_for("auth.account"), 303)
    if two_factor.required():
        return account(error="Two-factor sign-in is required for everyone here: it stays on.", status=400)
    error = confirmed_by_person(ConfirmForm())
    if error is not None:
        return account(error=error, status=400)
    two_factor.turn_off(current_user)
    return account(message="Two-factor sign-in is off. Your password alone logs you in.")


@bp.post("/account/two-factor/backup-codes")
def new_backup_codes():
    if not current_user.totp_secret:
        return redirect(url_for("auth.account"), 303)
    error = confirmed_by_person(ConfirmForm())
    if error is not None:
        return account(error=error, status=400)
    codes = two_factor.new_backup_codes(current_user)
    return render_template("accounts/backup_codes.html", codes=codes, new=False)


# --- one-time links to set a password (public: the token is the credential) ---------------


@bp.route("/set-password/<token>", methods=["GET", "POST"])
@public
def set_password(token: str):
    user = users.user_for_reset_token(token)
    if user is None:
        return render_template("accounts/set_password.html", form=None), 404
    form, error = SetPasswordForm(), None
    if form.validate_on_submit():
        error = form.problem()
        if error is None:
            user = users.set_password_with_link(token, form.password.data)
            if user is None:  # used or expired meanwhile
                return render_template("accounts/set_password.html", form=None), 404
            if current_user.is_authenticated:
                logout_user()
            session.clear()
            return redirect(url_for("auth.login", set="1"), 303)
    elif request.method == "POST":
        error = "Fill in both fields."
    return render_template(
        "accounts/set_password.html", form=form, user=user, error=error
    ), 200 if error is None else 400
