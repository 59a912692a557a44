"""sms-inbox: a web inbox for Messente inbound messages."""

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import (
    config,
    extensions,  # `extensions.db`: the name `app.db` is the package of models
)
from app.extensions import configure_engine, csrf, engine_options, login_manager, migrate

ROOT = Path(__file__).resolve().parent.parent


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
    app.config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"], lock_wait_seconds)
    )
    extensions.db.init_app(app)
    with app.app_context():
        configure_engine(extensions.db.engine, lock_wait_seconds)
    migrate.init_app(app, extensions.db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)

    # Each feature's blueprint, and the plumbing every page shares. Importing the features also
    # registers their kinds of background job (app/jobs/).
    from app import web
    from app.accounts import routes as accounts
    from app.admin import routes as admin
    from app.api import routes as api
    from app.callbacks import routes as callbacks
    from app.export import routes as export
    from app.inbox import routes as inbox
    from app.notifications import routes as notifications
    from app.ops import cli
    from app.privacy import purge  # noqa: F401 (its purge is a kind of job; it has no routes)
    from app.replies import routes as replies
    from app.reports import routes as reports
    from app.web.request_args import IdConverter
    from app.webhooks import routes as webhooks

    app.url_map.converters["int"] = IdConverter  # ids beyond their column's range are 404s
    for feature in (callbacks, accounts, inbox, notifications, replies, export, admin, webhooks, reports):
        app.register_blueprint(feature.bp)
    api.init_app(app)  # /api/v1, its document and its tokens' admin page
    cli.init_app(app)
    web.init_app(app)
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # Flask's documented way to wrap it
            app.wsgi_app, x_for=count, x_proto=count, x_host=count
        )
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
        secrets = config.shared_secrets(config.read_instance_file(app.instance_path, config.LOCAL_SECRET_FILE) or "")
    app.config["MESSENTE_SHARED_SECRETS"] = secrets
