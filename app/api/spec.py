"""The OpenAPI 3.1 document of /api/v1, made by flask-smorest from the blueprints and schemas
that serve it, plus what every operation shares (the token, and the errors every request can
get), added here from the same rules app/api/routes.py applies to every request."""

import copy
import http

from flask import Flask, current_app
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from app.api.problems import KINDS
from app.api.schemas import ProblemSchema
from app.web.errors import PROBLEM_TYPES
from app.web.request_args import IdConverter

PROBLEM_JSON = "application/problem+json"
SECURITY_SCHEME = "token"
DESCRIPTION = (
    """The inbox's JSON API. Every request sends an API token, made by an admin (Admin, then
API tokens): `Authorization: Bearer <token>`. Each operation names the scope it needs (`read`, `send`
or `admin`). Errors are problem details (RFC 9457, `application/problem+json`) whose `type` is
stable per kind of problem: """
    + ", ".join(f"`{PROBLEM_TYPES}{kind}`" for kind in KINDS)
    + "."
)

# The answers any operation can give, besides its own: a wrong token, a missing scope, a request
# that doesn't validate, the rate limit, the database away.
EVERY_OPERATION = (401, 403, 422, 429, 503)


class ProblemApi(Api):
    """flask-smorest's Api whose errors are problem documents (app/web/errors.py renders every
    error on /api/ as one), documented as `application/problem+json`, with no catch-all
    `default` answer: each operation lists the statuses it gives."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self):
        pass  # app/web/errors.py answers every error on an /api/ path

    def _register_responses(self):
        for status in http.HTTPStatus:
            response: dict = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            if status in (429, 503):
                response["headers"] = {
                    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}
                }
            if status == 401:
                response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
            if status == 405:
                response["headers"] = {"Allow": {"schema": {"type": "string"}}}
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)


def make_api(app: Flask) -> ProblemApi:
    app.config.setdefault("API_TITLE", "sms-inbox API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.1.0")
    app.config.setdefault("OPENAPI_URL_PREFIX", None)  # served by app/api/routes.py, with EVERY_OPERATION
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "info": {"description": DESCRIPTION},
            "servers": [{"url": "/"}],
            "security": [{SECURITY_SCHEME: []}],
        },
    )
    api = ProblemApi()
    api.register_converter(IdConverter, lambda converter: {"type": "integer", "minimum": 0, "maximum": converter.max})
    api.init_app(app)
    api.spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer smsi_...`. Scopes: read, send, admin.",
        },
    )
    app.extensions["api_v1"] = api
    return api


def document() -> dict:
    """The whole document, made once per app: smorest's, with the answers every operation can
    give (and 404 for those that name a resource, 400 and 409 for those that take a body)."""
    cache = current_app.extensions.setdefault("api_v1_document", {})
    if "document" not in cache:
        api: ProblemApi = current_app.extensions["api_v1"]
        for status in (*EVERY_OPERATION, 400, 404, 409):
            api.spec.components.get_ref("response", http.HTTPStatus(status).name)  # registers it
        spec = copy.deepcopy(api.spec.to_dict())
        for tag in spec.get("tags", []):  # the blueprints' names, api_<tag>
            tag["name"] = tag["name"].removeprefix("api_")
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                if method not in ("get", "put", "post", "patch", "delete"):
                    continue
                statuses = [*EVERY_OPERATION]
                if "{" in path:
                    statuses.append(404)
                if "requestBody" in operation:
                    statuses += [400, 409]  # a body that isn't JSON; a change the state refuses
                for status in statuses:
                    name = http.HTTPStatus(status).name
                    operation["responses"].setdefault(str(status), {"$ref": f"#/components/responses/{name}"})
                operation["responses"] = dict(sorted(operation["responses"].items()))
                operation["tags"] = [tag.removeprefix("api_") for tag in operation.get("tags", [])]
        cache["document"] = spec
    return cache["document"]


def operations(document: dict) -> list[dict]:
    """The document's operations for the page people read: by tag, each with its scope,
    parameters, body fields and answers (references followed)."""
    schemas = document.get("components", {}).get("schemas", {})
    responses = document.get("components", {}).get("responses", {})

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            kind, name = node["$ref"].split("/")[-2:]
            node = (schemas if kind == "schemas" else responses).get(name, {})
        return node

    def fields(schema: dict) -> list[dict]:
        schema = resolve(schema)
        required = set(schema.get("required", []))
        return [
            {
                "name": name,
                "type": type_name(resolve(prop)),
                "required": name in required,
                "description": prop.get("description", ""),
                "values": resolve(prop).get("enum"),
            }
            for name, prop in schema.get("properties", {}).items()
        ]

    found = []
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            scopes = [
                scope for requirement in operation.get("security", []) for scope in requirement.get(SECURITY_SCHEME, [])
            ]
            found.append(
                {
                    "id": operation.get("operationId") or f"{method}-{path}",
                    "tag": (operation.get("tags") or [""])[0],
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "scope": scopes[0] if scopes else "any",
                    "parameters": [
                        {
                            "name": parameter["name"],
                            "in": parameter["in"],
                            "required": parameter.get("required", False),
                            "type": type_name(parameter.get("schema", {})),
                            "description": parameter.get("description", ""),
                            "values": parameter.get("schema", {}).get("enum"),
                        }
                        for parameter in operation.get("parameters", [])
                    ],
                    "body": fields(body) if body else [],
                    "responses": [
                        (status, resolve(answer).get("description", ""))
                        for status, answer in operation["responses"].items()
                    ],
                }
            )
    order = [tag["name"] for tag in document.get("tags", [])]
    return sorted(
        found, key=lambda operation: order.index(operation["tag"]) if operation["tag"] in order else len(order)
    )


def tags(document: dict) -> list[dict]:
    """The document's tags (one per blueprint), in the order they were registered."""
    return document.get("tags", [])


def type_name(schema: dict) -> str:
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        return f"array of {type_name(schema.get('items', {}))}"
    return kind
