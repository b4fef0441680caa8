"""Great Expectations' Data Docs without the internet: their CDN assets served from a vendored copy.

GX renders every Data Docs page with ~15 stylesheets and scripts from public CDNs (Bootstrap, jQuery,
bootstrap-table, Vega, Font Awesome, ...) and its logo from S3, with the data context's id in the logo's
query string. The report serves the site through ``rewrite``: each of those URLs becomes the same file,
vendored from the npm registry in ``data_docs_vendor/`` (``NOTICE.md`` there lists the packages, versions
and licences) and served at ``data-docs-vendor/``; the logo becomes the site's own ``static/images`` copy.
The Subresource Integrity attributes go with the CDN URLs (the files are same-origin now). Whatever is left
pointing outside is blocked by the Data Docs pages' Content-Security-Policy (``DATA_DOCS_CSP``), so a GX upgrade
that adds an asset shows as a missing style, never as a request to the internet;
``tests/orchestration/test_data_docs_offline.py`` checks the installed GX's templates against ``CDN_FILES``.
"""

from __future__ import annotations

import re
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "data_docs_vendor"
VENDOR_ROUTE = "data-docs-vendor"  # beside data-docs/ in the report app

# CDN URL as GX's templates write it -> the vendored file (relative to VENDOR_DIR)
CDN_FILES = {
    "https://cdn.jsdelivr.net/npm/vega@5": "vega@5.33.1/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite@5.23.0/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed@6.29.0/build/vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free@6.6.0/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery@3.7.1/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js@1.12.9/dist/umd/popper.min.js"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap@4.3.1/dist/js/bootstrap.min.js"
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap@4.3.1/dist/css/bootstrap.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table@1.19.1/dist/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    # GX asks for the 1.19.0 stylesheet of the extension (minified or not) beside 1.19.1's script: 1.19.1's is served
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker@1.9.0/dist/css/bootstrap-datepicker.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker@1.9.0/dist/js/bootstrap-datepicker.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.min.css"
    ),
}
GX_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
# the S3 images GX names, in the site's own static/images/ (GX copies that folder into every site)
GX_IMAGE_FILES = {"logo-long.png": "logo-long.png", "full_logo_dark.png": "logo-long.png"}

_CDN = re.compile("|".join(re.escape(url) for url in sorted(CDN_FILES, key=len, reverse=True)) + r"(?=[\"'\s)>])")
_S3 = re.compile(re.escape(GX_IMAGES) + r"([\w.-]+)(\?[^\"'\s)]*)?")
_SRI = re.compile(r"\s(?:integrity|crossorigin)=(\"[^\"]*\"|'[^']*'|[\w-]+)")

# for the Data Docs pages (their own inline scripts and Vega's expression compiler need inline and eval);
# nothing outside the origin loads
DATA_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; base-uri 'self'; "
    "form-action 'none'"
)


def rewrite(text: str, site_path: str) -> str:
    """``text`` of the site's file at ``site_path`` (its URL path below data-docs/) with the CDN and S3 URLs local."""
    depth = site_path.count("/")
    to_site = "../" * depth
    to_vendor = "../" * (depth + 1) + VENDOR_ROUTE + "/"
    text = _CDN.sub(lambda m: to_vendor + CDN_FILES[m.group(0)], text)
    text = _S3.sub(lambda m: to_site + "static/images/" + GX_IMAGE_FILES.get(m.group(1), "logo-long.png"), text)
    return _SRI.sub("", text) if site_path.endswith((".html", "/")) or not site_path else text
