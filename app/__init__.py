"""sms-inbox: a web inbox for Messente inbound messages."""
from pathlib import Path

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config
from .extensions import configure_engine, csrf, db, engine_options, login_manager, migrate

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

    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)

    from . import auth, callback, cli, inbox, replies

    app.register_blueprint(callback.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(inbox.bp)
    cli.init_app(app)

    app.before_request(replies.start_outbox)  # each worker's reply senders, from its first request
    app.after_request(add_security_headers)
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

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.persistent_secret_key(app.instance_path)
    secrets = config.shared_secrets(app.config["MESSENTE_SHARED_SECRET"])
    if not secrets and test_config is None:
        secrets = config.shared_secrets(
            config.read_instance_file(app.instance_path, config.LOCAL_SECRET_FILE) or ""
        )
    app.config["MESSENTE_SHARED_SECRETS"] = secrets


def add_security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
