"""The app exactly as `make run` serves it, plus two no-op routes: the ceilings to compare with.

Only the benchmarks serve these routes (gunicorn: 'bench.app:create_bench_app()').
"""
from flask import request

from app import auth, create_app
from app.extensions import csrf

NOOP = "/bench/noop"
NOOP_LOGGED_IN = "/bench/noop-logged-in"


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
    return app
