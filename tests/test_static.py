"""Static files: fingerprinted URLs cached for a year, so a repeat visit fetches none of them."""

import hashlib
import re

from flask import Flask, url_for

from app.web import static_files
from app.web.static_files import IMMUTABLE
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
        app = Flask(
            __name__, static_folder=str(tmp_path), static_url_path="/static"
        )  # as a restart after a deploy hashes again
        static_files.init_app(app)
        with app.test_request_context():
            return url_for("static", filename="style.css")

    (tmp_path / "style.css").write_text("body { color: black; }")
    before = url_of_stylesheet()
    assert before == f"/static/style.css?v={fingerprint(tmp_path / 'style.css')}"
    assert url_of_stylesheet() == before  # the same content keeps its URL

    (tmp_path / "style.css").write_text("body { color: navy; }")
    assert url_of_stylesheet() != before


def test_every_script_module_is_loaded_by_its_own_fingerprinted_url(tmp_path):
    """An `import` between modules would name a sibling by a plain URL, without the fingerprint,
    and the browser could keep running an old copy of it after a deploy: so base.html loads each
    module of static/js itself, and none imports another (templates/base.html says more)."""
    modules = sorted(path.name for path in (ROOT / "static" / "js").glob("*.js"))
    page = make_app(f"sqlite:///{tmp_path / 'modules.sqlite3'}").test_client().get("/login").text
    loaded = re.findall(r'<script type="module" src="/static/js/([^"?]+)\?v=([0-9a-f]+)"></script>', page)
    assert sorted(name for name, _ in loaded) == modules
    assert loaded[0][0] == "shared.js"  # it makes the namespace the others fill
    for name, version in loaded:
        source = (ROOT / "static" / "js" / name).read_text()
        assert version == fingerprint(ROOT / "static" / "js" / name)
        assert not re.search(r"^\s*(import|export)\b|\bimport\s*\(", source, re.MULTILINE), name
        assert source.startswith("// "), name  # a line saying what the module is for
    assert not (ROOT / "static" / "app.js").exists()


def test_one_htmx_before_swap_handler():
    """The thread's bookkeeping runs before a held-back poll's swap is cancelled: one handler
    (static/js/swaps.js) says in which order, rather than the order the modules load in."""
    handlers = {
        path.name: path.read_text().count('addEventListener("htmx:beforeSwap"')
        for path in (ROOT / "static" / "js").glob("*.js")
    }
    assert {name: count for name, count in handlers.items() if count} == {"swaps.js": 1}
