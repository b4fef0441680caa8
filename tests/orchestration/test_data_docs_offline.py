"""Data Docs offline: every asset GX's templates load from a CDN is vendored, and the report serves it locally.

The pages under test are made of the installed Great Expectations' own templates (their ``<link>``, ``<script>``
and ``<img>`` tags as GX writes them), so a GX upgrade that names another asset fails here first; the browser
test in ``test_report_page.py`` loads such a page and checks that no request leaves loopback.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from collectors.orchestration import data_docs_offline
from collectors.orchestration.report import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

# the installed GX's files, found without importing it (its import alone takes seconds)
GX_VIEW = Path(importlib.util.find_spec("great_expectations").origin).parent / "render" / "view"  # type: ignore[arg-type,union-attr]
TEMPLATES = GX_VIEW / "templates"
# what a page loads by itself (links a reader follows, <a href>, are not requests)
LOADED = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=[\"']([^\"']+)[\"']", re.I)
CSS_URL = re.compile(r"url\(['\"]?([^'\")]+)['\"]?\)")
PAGE = "validations/raw_minute_snapshots/weekly__run/20261201T000000Z/result.html"


def gx_asset_urls() -> set[str]:
    """Every absolute URL GX's templates and default styles load."""
    urls = set()
    for template in TEMPLATES.glob("*.j2"):
        urls |= {u for u in LOADED.findall(template.read_text()) if u.startswith("http")}
    for style in (GX_VIEW / "static" / "styles").glob("*.css"):
        urls |= {u for u in CSS_URL.findall(style.read_text()) if u.startswith("http")}
    return urls


def gx_like_page() -> str:
    """The head and script tags of GX's page templates, Jinja removed, with its S3 logo as GX renders it."""
    parts = [(TEMPLATES / name).read_text() for name in ("page.j2", "js_script_imports.j2")]
    text = re.sub(r"{[%#].*?[%#]}|{{.*?}}", "", "\n".join(parts), flags=re.S)
    logo = data_docs_offline.GX_IMAGES + "logo-long.png?d=20261201T000000Z&dataContextId=cf4a3cbb"
    return f'<html><head>{text}</head><body><img src="{logo}"><link rel="stylesheet" href="{STYLE_HREF}"></body></html>'


STYLE_HREF = "../../../../static/styles/data_docs_default_styles.css"


def test_every_cdn_asset_of_the_installed_gx_is_vendored() -> None:
    urls = gx_asset_urls()
    assert len(urls) >= 15
    unknown = {
        u for u in urls if u not in data_docs_offline.CDN_FILES and not u.startswith(data_docs_offline.GX_IMAGES)
    }
    assert unknown == set()
    for url, file in data_docs_offline.CDN_FILES.items():
        assert (data_docs_offline.VENDOR_DIR / file).is_file(), url
    for folder in {f.split("/")[0] for f in data_docs_offline.CDN_FILES.values()}:
        assert list((data_docs_offline.VENDOR_DIR / folder).glob("LICENSE*")), folder
    # Font Awesome's stylesheet names its fonts: those are vendored too
    css = data_docs_offline.VENDOR_DIR / "fontawesome-free@6.6.0" / "css" / "all.min.css"
    for font in {u for u in CSS_URL.findall(css.read_text()) if u.endswith(".woff2")}:
        assert (css.parent / font).resolve().is_file(), font


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "local_site"
    (root / PAGE).parent.mkdir(parents=True)
    (root / PAGE).write_text(gx_like_page())
    (root / "index.html").write_text(gx_like_page().replace("../../../../static", "static"))
    static = root / "static"
    for sub in ("styles", "images"):
        (static / sub).mkdir(parents=True)
    for style in (GX_VIEW / "static" / "styles").glob("*.css"):
        (static / "styles" / style.name).write_text(style.read_text())
    (static / "images" / "logo-long.png").write_bytes((GX_VIEW / "static" / "images" / "logo-long.png").read_bytes())
    return root


def test_data_docs_pages_load_only_from_the_report(site: Path) -> None:
    app = create_app(database_url=lambda: "postgresql://unused@127.0.0.1:1/x", docs_root=lambda: site)
    with TestClient(app) as http:
        for page in ("index.html", PAGE):
            reply = http.get(f"/data-docs/{page}")
            assert reply.status_code == 200
            assert "default-src 'self'" in reply.headers["content-security-policy"]
            loaded = LOADED.findall(reply.text)
            assert len(loaded) >= 15
            assert [u for u in loaded if urlsplit(u).scheme or u.startswith("//")] == []
            assert "integrity=" not in reply.text and "amazonaws" not in reply.text
            base = f"http://testserver/data-docs/{page}"
            for url in loaded:  # every asset is there, through the same app
                asset = http.get(urljoin(base, url))
                assert asset.status_code == 200, url
                if url.endswith(".css"):
                    for inner in CSS_URL.findall(asset.text):
                        if not inner.startswith("data:"):
                            assert not urlsplit(inner).scheme, (url, inner)
                            if inner.endswith((".woff2", ".png")):
                                assert http.get(urljoin(urljoin(base, url), inner)).status_code == 200, inner
        vendor = http.get(f"/{data_docs_offline.VENDOR_ROUTE}/jquery@3.7.1/dist/jquery.min.js")
        assert vendor.status_code == 200 and vendor.text.startswith("/*! jQuery v3.7.1")
        for escape in ("..%2f..%2freport.py", "%2e%2e/%2e%2e/report.py"):
            assert http.get(f"/{data_docs_offline.VENDOR_ROUTE}/{escape}").status_code == 404
