"""Ids in paths and query strings: a number no id column can hold is "no such page", never a 500."""

import pytest

from app.web.request_args import LARGEST_ID, LARGEST_INT
from conftest import ONE_DATABASE

HUGE = "9" * 25  # far beyond a BIGINT: SQLite and PostgreSQL both refuse it as a parameter


def test_a_huge_session_id_to_end_is_not_found(auth):
    auth.login()
    response = auth.client.post(f"/account/sessions/{HUGE}/end", data={"csrf_token": auth.csrf("/account")})
    assert response.status_code == 404


def test_a_huge_user_id_is_not_found(auth):
    auth.login()
    assert auth.client.get(f"/admin/users/{HUGE}").status_code == 404
    assert auth.client.get(f"/admin/users/{LARGEST_INT + 1}").status_code == 404  # users.id is an INTEGER
    assert auth.client.get(f"/admin/users/{LARGEST_INT}").status_code == 404  # in range, just no one


@pytest.mark.parametrize("before", ["²", "①", "-1", "1 ", HUGE])
def test_an_audit_page_before_what_is_no_event_id_is_a_clear_400(auth, before):
    auth.login()
    response = auth.client.get("/admin/audit", query_string={"before": before})
    assert response.status_code == 400 and "must be an id" in response.text


@ONE_DATABASE
def test_every_int_in_a_route_is_bounded_to_the_id_columns(app):
    """Routes added later get the same bound: the app's `int` converter carries it."""
    bounded = [
        (rule.rule, converter.max)
        for rule in app.url_map.iter_rules()
        for converter in rule._converters.values()
        if hasattr(converter, "max")
    ]
    assert bounded and all(max_ is not None and max_ <= LARGEST_ID for _, max_ in bounded)


def test_a_huge_conversation_id_is_not_found(auth):
    auth.login()
    assert auth.client.get(f"/conversations/{LARGEST_ID}").status_code == 404
    assert auth.client.get(f"/admin/conversations/{LARGEST_ID}/delete").status_code == 404
    assert auth.client.get(f"/admin/conversations/{HUGE}/delete").status_code == 404
