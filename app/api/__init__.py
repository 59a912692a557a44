"""The JSON API, /api/v1: tokens and their scopes, the resources (conversations, messages,
contacts, users), problem details for errors, idempotency keys and a per-token rate limit.

Requests carry `Authorization: Bearer <token>`, never a cookie: an API request never loads the
session's user (app/api/routes.py puts the token's principal in its place), so there is no CSRF.
The OpenAPI 3.1 document is generated from the same marshmallow schemas that validate each
request (flask-smorest), at /api/v1/openapi.json; docs/api.md says how to use it.
"""
