"""The app exactly as `make run` serves it, plus the routes benchmarks compare with: two no-op
ceilings, and the callback without group commit (one transaction and one fsync per message).

Only the benchmarks serve these routes (gunicorn: 'bench.app:create_bench_app()').
"""

from flask import current_app, request

from app import create_app
from app.accounts import routes as auth
from app.callbacks import ingest, signing
from app.extensions import csrf

NOOP = "/bench/noop"
NOOP_LOGGED_IN = "/bench/noop-logged-in"
INBOUND_WITHOUT_GROUP_COMMIT = "/bench/inbound-without-group-commit"


def create_bench_app(test_config: dict | None = None):
    app = create_app(test_config)

    # Public like the callback: what an unauthenticated provider request costs at least.
    @app.route(NOOP, methods=["GET", "POST"], endpoint="bench_noop")
    @csrf.exempt
    @auth.public
    def noop():
        request.get_data()  # read the body, as the callback must
        return "ok"

    @app.get(NOOP_LOGGED_IN, endpoint="bench_noop_logged_in")
    def noop_logged_in():
        return "ok"  # through the login check and session, like every inbox request

    # The callback's work, each message committed on its own: what group commit is measured against.
    @app.post(INBOUND_WITHOUT_GROUP_COMMIT, endpoint="bench_inbound_without_group_commit")
    @csrf.exempt
    @auth.public
    def inbound_without_group_commit():
        body = request.get_data()
        if not signing.verify(
            body, request.headers.get("X-Messente-Signature"), current_app.config["MESSENTE_SHARED_SECRETS"]
        ):
            return {"error": "missing or invalid X-Messente-Signature"}, 401
        [stored] = ingest.store_messages([ingest.parse_payload(body)])
        return {"status": "stored" if stored else "duplicate"}

    return app
