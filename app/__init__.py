"""sms-inbox: a web inbox for Messente inbound messages."""
import hashlib
from pathlib import Path

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config
from app import extensions  # `extensions.db`: the name `app.db` is the package of models
from app.extensions import configure_engine, csrf, engine_options, login_manager, migrate

ROOT = Path(__file__).resolve().parent.parent

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    load_config(app, test_config)

    lock_wait_seconds = app.config["WRITE_LOCK_WAIT_SECONDS"]
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS",
                          engine_options(app.config["SQLALCHEMY_DATABASE_URI"], lock_wait_seconds))
    extensions.db.init_app(app)
    with app.app_context():
        configure_engine(extensions.db.engine, lock_wait_seconds)
    migrate.init_app(app, extensions.db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)

    from app.admin import routes as admin
    from app.privacy import retention  # noqa: F401 (retention and replies register their kinds of job)
    from app.accounts import routes as auth
    from app.callbacks import routes as callback
    from app.ops import cli
    from app.inbox import routes as inbox
    from app import replies
    from app.replies import saved_replies  # noqa: F401
    from app.web.request_args import IdConverter

    app.url_map.converters["int"] = IdConverter  # ids beyond their column's range are 404s
    app.register_blueprint(callback.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(saved_replies.bp)
    cli.init_app(app)

    app.after_request(add_security_headers)
    fingerprint_static_files(app)
    app.register_error_handler(HTTPException, callback.json_errors_on_callback_paths)
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    return app


def load_config(app: Flask, test_config: dict | None) -> None:
    app.config.from_mapping(config.defaults(app.instance_path))
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_mapping(config.from_environment())
    else:
        app.config.from_mapping(test_config)

    if app.config["TRUSTED_HOSTS"] is None:
        app.config["TRUSTED_HOSTS"] = config.trusted_hosts(app.config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.persistent_secret_key(app.instance_path)
    secrets = config.shared_secrets(app.config["MESSENTE_SHARED_SECRET"])
    if not secrets and test_config is None:
        secrets = config.shared_secrets(
            config.read_instance_file(app.instance_path, config.LOCAL_SECRET_FILE) or ""
        )
    app.config["MESSENTE_SHARED_SECRETS"] = secrets


# A fingerprinted static URL names one version of the file for ever: cache it for a year.
IMMUTABLE = "public, max-age=31536000, immutable"


def fingerprint_static_files(app: Flask) -> None:
    """`url_for('static', ...)` adds `v=<sha256 prefix of the file>`, and a response to a URL
    whose `v` is the file's own is cached for a year: a repeat visit fetches no static file,
    and a changed file gets a new URL. Hashed once, at start-up (static files ship with the code).
    """
    folder = Path(app.static_folder)
    versions = {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
                for path in folder.rglob("*") if path.is_file()}

    @app.url_defaults
    def add_version(endpoint, values):
        if endpoint == "static" and "v" not in values and values.get("filename") in versions:
            values["v"] = versions[values["filename"]]

    @app.after_request
    def cache_fingerprinted(response):
        if (request.endpoint == "static" and response.status_code in (200, 304)
                and request.args.get("v", "") == versions.get((request.view_args or {}).get("filename"))):
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def add_security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if current_app.config["SESSION_COOKIE_SECURE"]:  # served over HTTPS: browsers should only use HTTPS
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
