"""Reading a request's body within its limits: JSON or a form, as LibreTranslate's clients send them."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl

from fastapi import Request


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


async def parameters(request: Request, limit: int) -> dict:
    """The body's fields: a JSON object, or form fields (urlencoded or multipart; the last value of a
    repeated field)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        await body_within(request, limit)  # cached by Starlette for form()
        form = await request.form()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    body = await body_within(request, limit)
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
        return dict(parse_qsl(text, keep_blank_values=True))
    raise BadRequest(f"unsupported content type {kind or '(none)'!r}: send application/json or a form "
                     "(application/x-www-form-urlencoded or multipart/form-data)")
