"""The identity API's HTTP side, on Flask: which route answers a request, who may ask (the bearer token), and how
every answer and refusal is written (JSON, headers, the request metric). What each route answers is
identity_routes.Routes'; workers/identity/identity_api.py serves the application."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter, RequestRedirect

from workers.identity.console import console_asset
from workers.identity.identity_requests import RequestError, request_space
from workers.identity.identity_routes import Reply, Routes
from workers.identity.openapi import openapi_document
from workers.plumbing import metrics

log = logging.getLogger(__name__)

#: A photo as base64 fits (a 12 MB photo); an embedding needs far less.
MAX_BODY_BYTES = 16 << 20

#: The console's files (shipped in the package: nothing is fetched at run time) and their media types.
_CONSOLE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
#: The console runs only its own script, shows only its own and blob: pictures, and is never framed.
_CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: Answers with identities and faces are never kept by a browser or a proxy.
_DATA_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
#: What answers without a token: the console's files and the API's description hold no data.
_PUBLIC = frozenset({"home", "console", "openapi"})

_ROUTES_HINT = (
    "not found: GET /v1/spaces/<space>/identities[/<id>[/appearances]], /v1/spaces/<space>/faces/<id>/thumbnail; "
    "POST /v1/spaces/<space>/search or /v1/spaces/<space>/commands"
)


class NameConverter(PathConverter):
    """A space or a face id in a path: any characters, slashes too (a camera id may hold one, sent as %2F)."""

    regex = ".+?"
    part_isolating = False  # may span segments (werkzeug infers True for a pattern that does not name "/")


def identity_app(routes: Routes, token: str, dimension: int) -> Flask:
    """The API and its console as a WSGI application; every data route needs ``Authorization: Bearer <token>``."""
    app = Flask(__name__, static_folder=None)
    app.url_map.converters["name"] = NameConverter
    app.url_map.merge_slashes = False  # a space may hold "//"
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    _add_public_routes(app, json.dumps(openapi_document(dimension)).encode())
    _add_data_routes(app, routes)
    _guard(app, f"Bearer {token}".encode())
    return app


def _route(app: Flask, path: str, view: Any, method: str = "GET") -> None:
    # No automatic OPTIONS: every method but the route's (and HEAD for a GET) is a 405.
    app.add_url_rule(path, view.__name__, view, methods=[method], provide_automatic_options=False)


def _add_public_routes(app: Flask, description: bytes) -> None:
    def home() -> Response:
        return Response(status=308, headers={"Location": "/console/"})

    def console(name: str = "index.html") -> Response:
        if name not in _CONSOLE_FILES:
            raise RequestError(404, f"the console has no file {name[:100]!r}")
        return Response(console_asset(name), content_type=_CONSOLE_FILES[name])

    def openapi() -> Response:
        return Response(description, content_type="application/json", headers={"Cache-Control": "no-cache"})

    _route(app, "/", home)
    _route(app, "/console/", console)  # "/console" is sent here (308) by the router
    _route(app, "/console/<name>", console)
    _route(app, "/v1/openapi.json", openapi)


def _add_data_routes(app: Flask, routes: Routes) -> None:
    def identities(space: str) -> Response:
        return _sent(routes.identities(space, _query()))

    def identity(space: str, raw_id: str) -> Response:
        return _sent(routes.identity(space, raw_id))

    def appearances(space: str, raw_id: str) -> Response:
        return _sent(routes.appearances(space, raw_id, _query()))

    def thumbnail(space: str, face_id: str) -> Response:
        return _sent(routes.thumbnail(space, face_id))

    def search(space: str) -> Response:
        return _sent(routes.search(space, _json_body()))

    def command(space: str) -> Response:
        return _sent(routes.command(space, _json_body()))

    prefix = "/v1/spaces/<name:space>"
    _route(app, f"{prefix}/identities", identities)
    _route(app, f"{prefix}/identities/<raw_id>", identity)
    _route(app, f"{prefix}/identities/<raw_id>/appearances", appearances)
    _route(app, f"{prefix}/faces/<name:face_id>/thumbnail", thumbnail)
    _route(app, f"{prefix}/search", search, "POST")
    _route(app, f"{prefix}/commands", command, "POST")


def _query() -> dict[str, list[str]]:
    return request.args.to_dict(flat=False)


def _json_body() -> Any:
    data = request.get_data(cache=False)  # over MAX_BODY_BYTES: a 413, before it is read
    try:
        return json.loads(data or b"null")
    except ValueError as exc:
        raise RequestError(400, f"the body is not JSON: {exc}") from exc


def _guard(app: Flask, expected: bytes) -> None:
    """The token check before every data route, and how every answer and refusal leaves."""

    @app.before_request
    def authorize() -> Response | None:
        if request.endpoint in _PUBLIC or isinstance(request.routing_exception, RequestRedirect):
            return None  # a redirect ("/console" to "/console/") says nothing but where the page is
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            metrics.API_UNAUTHORIZED.inc()  # also an unknown path: nothing is found out without the token
            return _refusal(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        if request.view_args and "space" in request.view_args:
            request_space(request.view_args["space"])  # every data route names one: checked here, once
        return None

    @app.errorhandler(RequestError)
    def refused(exc: RequestError) -> Response:
        return _refusal(exc.status, str(exc))

    @app.errorhandler(HTTPException)
    def http_refused(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            return _refusal(404, _ROUTES_HINT)
        allow = {name: value for name, value in exc.get_headers() if name == "Allow"}  # a 405's
        return _refusal(status, exc.description or exc.name, allow)

    @app.errorhandler(Exception)
    def failed(exc: Exception) -> Response:
        log.exception("identity API: %s %s failed", request.method, request.path[:200])
        return _refusal(500, "internal error; see the worker's log")

    @app.after_request
    def finish(response: Response) -> Response:
        if request.endpoint in ("home", "console"):
            extra = _CONSOLE_HEADERS
        else:
            extra = {} if request.endpoint == "openapi" else _DATA_HEADERS
        for name, value in extra.items():
            response.headers.setdefault(name, value)
        metrics.API_REQUESTS.labels(str(response.status_code)).inc()
        return response


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"error": message}), status, headers, content_type="application/json")


def _sent(reply: Reply) -> Response:
    return Response(reply.body, reply.status, content_type=reply.content_type)
