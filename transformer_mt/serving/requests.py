"""Reading a request's body within its limits: JSON or a form, as LibreTranslate's clients send them."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser


class BadRequest(Exception):
    """Answered as {"error": message} with `status`."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


async def body_within(request: Request, limit: int) -> bytes:
    """The raw body; 413 as soon as it is known to be over `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the request body is {int(declared):,} bytes; at most {limit:,} are accepted", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the request body is over {limit:,} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _multipart(headers, body: bytes):
    """A multipart body's fields (Starlette's parser, over the body already read within its limit)."""
    async def chunks():
        yield body

    try:
        return await MultiPartParser(headers, chunks()).parse()
    except MultiPartException as err:
        raise BadRequest(f"the multipart form could not be read: {err.message}") from None


async def parameters(request: Request, limit: int) -> dict:
    """The request's fields: a JSON body's object; else the query string's and a form body's
    (urlencoded or multipart; the last value of a repeated field), the query string's first where both
    name one, as LibreTranslate (Flask's request.values) reads them: PHP clients put q in the URL."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    query = dict(request.query_params)
    if kind == "multipart/form-data":
        form = await _multipart(request.headers, await body_within(request, limit))
        return {**{key: value for key, value in form.items() if isinstance(value, str)}, **query}
    body = await body_within(request, limit)
    if not body and kind != "application/json":
        return query
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None
    if kind == "application/json":
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadRequest(f"the request body is not valid JSON: {err.msg} at character {err.pos}") from None
        if not isinstance(fields, dict):
            raise BadRequest("the JSON body must be an object, e.g. {\"q\": \"Hello.\", \"source\": \"en\", "
                             "\"target\": \"fr\"}")
        return fields
    if kind == "application/x-www-form-urlencoded":
        return {**dict(parse_qsl(text, keep_blank_values=True)), **query}
    raise BadRequest(f"unsupported content type {kind or '(none)'!r}: send application/json or a form "
                     "(application/x-www-form-urlencoded or multipart/form-data)")
