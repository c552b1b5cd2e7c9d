"""The LibreTranslate API, written from its documentation (https://docs.libretranslate.com): existing
LibreTranslate clients work unchanged. This server translates English to French only; `source: auto`
is taken as English (there is no language detection, and /detect says so)."""
from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .keys import ApiKeys
from .requests import BadRequest, parameters
from .translation import Service

LANGUAGES = {"en": "English", "fr": "French"}
SOURCE, TARGET = "en", "fr"


def router(service: Service, keys: ApiKeys) -> APIRouter:
    routes = APIRouter()

    @routes.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        fields = await parameters(request, service.limits.max_body_bytes)
        keys.check(fields.get("api_key"))
        q, alternatives = _checked(fields, service)
        texts = q if isinstance(q, list) else [q]
        decode = service.translator.decode
        decode = replace(decode, beam_size=max(decode.beam_size, alternatives + 1))
        done = await service.translate(texts, decode, alternatives + 1)
        best = [nbest[0].text for nbest in done.translations]
        answer: dict = {"translatedText": best if isinstance(q, list) else best[0]}
        if alternatives:
            others = [[t.text for t in nbest[1:]] for nbest in done.translations]
            answer["alternatives"] = others if isinstance(q, list) else others[0]
        if done.notes:
            answer["notes"] = done.notes
        return JSONResponse(answer)

    @routes.get("/languages")
    async def languages() -> list[dict]:
        return [{"code": SOURCE, "name": LANGUAGES[SOURCE], "targets": [TARGET]},
                {"code": TARGET, "name": LANGUAGES[TARGET], "targets": []}]

    @routes.get("/frontend/settings")
    async def settings() -> dict:
        return {"charLimit": service.limits.max_chars, "frontendTimeout": 500, "apiKeys": keys.required,
                "keyRequired": keys.required, "suggestions": False, "filesTranslation": False,
                "supportedFilesFormat": [],
                "language": {"source": {"code": SOURCE, "name": LANGUAGES[SOURCE]},
                             "target": {"code": TARGET, "name": LANGUAGES[TARGET]}}}

    @routes.post("/detect")
    async def detect() -> None:
        raise BadRequest("language detection is not supported: this server translates English (en) to French "
                         "(fr) only; send source=en (source=auto is taken as English)")

    return routes


def _checked(fields: dict, service: Service) -> tuple[str | list[str], int]:
    """q, and the number of alternatives asked for; BadRequest for anything LibreTranslate refuses."""
    if "q" not in fields:
        raise BadRequest("Invalid request: missing q parameter")
    q = fields["q"]
    if not isinstance(q, (str, list)):
        raise BadRequest(f"q must be a string or a list of strings, not {type(q).__name__}")
    service.check_texts(q if isinstance(q, list) else [q])
    source, target = fields.get("source", SOURCE), fields.get("target", TARGET)
    if source not in (SOURCE, "auto"):
        raise BadRequest(f"{source!r} is not an available source language: this server translates en to fr")
    if target != TARGET:
        raise BadRequest(f"{target!r} is not an available target language: this server translates en to fr")
    if fields.get("format", "text") != "text":
        raise BadRequest(f"format {fields.get('format')!r} is not supported: send format=text (HTML would need "
                         "its text nodes translated and its markup kept, which this server does not do)")
    return q, _alternatives(fields.get("alternatives", 0), service.limits.max_alternatives)


def _alternatives(value, most: int) -> int:
    try:
        count = int(value) if not isinstance(value, (bool, float)) else None
    except (TypeError, ValueError):
        count = None
    if count is None or not 0 <= count <= most:
        raise BadRequest(f"alternatives must be a whole number from 0 to {most}, got {value!r}")
    return count
