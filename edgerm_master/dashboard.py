"""The web dashboard's files: `/` is `web/index.html`, `/static/<name>` the other files of
`edgerm_master/web/` (shipped as package data; no build step). The page needs no token to
load; everything it shows comes from the token-checked API (http_api.py).
"""

from __future__ import annotations

from importlib import resources

from edgerm_master.http_server import HttpApp, HttpError, HttpRequest, HttpResponse

__all__ = ["add_dashboard_routes", "DASHBOARD_FILES"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _load() -> dict[str, tuple[bytes, str]]:
    """Every file of the dashboard by name, with its content type (read once: a few KB)."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in (resources.files("edgerm_master") / "web").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


DASHBOARD_FILES = _load()


def add_dashboard_routes(app: HttpApp) -> None:
    async def index(request: HttpRequest) -> HttpResponse:
        body, content_type = DASHBOARD_FILES["index.html"]
        return HttpResponse(200, body, content_type)

    async def static(request: HttpRequest) -> HttpResponse:
        name = request.path[len("/static/"):]
        found = DASHBOARD_FILES.get(name)  # only the files listed: no path from the request
        if found is None:
            raise HttpError(404, "not_found", f"no dashboard file {name!r}")
        return HttpResponse(200, found[0], found[1])

    app.route("/", index, auth=False)
    app.route("/static/", static, auth=False, prefix=True)
