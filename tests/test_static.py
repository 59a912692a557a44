"""Static files: fingerprinted URLs cached for a year, so a repeat visit fetches none of them."""
import hashlib
import re

from flask import Flask, url_for

from app import IMMUTABLE, fingerprint_static_files
from conftest import ROOT, make_app


def fingerprint(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_pages_link_static_files_by_content_and_those_urls_are_cached_for_a_year(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'static.sqlite3'}")
    client = app.test_client()
    page = client.get("/login").text
    links = dict(re.findall(r'(?:href|src)="/static/([^"?]+)\?v=([0-9a-f]+)"', page))
    assert links["style.css"] == fingerprint(ROOT / "static" / "style.css")
    assert set(links) >= {"style.css", "favicon.svg"}
    for name, version in links.items():
        response = client.get(f"/static/{name}?v={version}")
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == IMMUTABLE
        assert response.data == (ROOT / "static" / name).read_bytes()
        response.close()

    # Without the file's own fingerprint the browser must ask again: an old or made-up
    # version, or none, is never cached for a year.
    for url in ("/static/style.css", "/static/style.css?v=000000000000"):
        response = client.get(url)
        assert response.status_code == 200
        assert "immutable" not in response.headers.get("Cache-Control", "")
        response.close()


def test_a_changed_file_gets_a_new_url(tmp_path):
    def url_of_stylesheet() -> str:
        app = Flask(__name__, static_folder=str(tmp_path), static_url_path="/static")  # as a restart after a deploy hashes again
        fingerprint_static_files(app)
        with app.test_request_context():
            return url_for("static", filename="style.css")

    (tmp_path / "style.css").write_text("body { color: black; }")
    before = url_of_stylesheet()
    assert before == f"/static/style.css?v={fingerprint(tmp_path / 'style.css')}"
    assert url_of_stylesheet() == before  # the same content keeps its URL

    (tmp_path / "style.css").write_text("body { color: navy; }")
    assert url_of_stylesheet() != before
