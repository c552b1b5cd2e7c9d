"""The LibreTranslate API, written from its documentation (https://docs.libretranslate.com) and the
requests its clients send: existing LibreTranslate clients work unchanged. This server translates
English to French only: `format: html` keeps the markup (markup.py); `source: auto` detects English or
French (detection.py) and answers French as LibreTranslate answers a pair it has no model for (400);
/detect ranks the two."""
from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .detection import LANGUAGES, Detected, Detector
from .keys import ApiKeys
from .requests import BadRequest, parameters
from .translation import Service

SOURCE, TARGET = "en", "fr"
FORMATS = ("text", "html")


def router(service: Service, keys: ApiKeys, detector: Detector) -> APIRouter:
    routes = APIRouter()

    @routes.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        fields = await parameters(request, service.limits.max_body_bytes)
        keys.check(fields.get("api_key"))
        return JSONResponse(await _translated(fields, service, detector))

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
    async def detect(request: Request) -> list[dict]:
        """The languages the text may be in, best first, confidence 0 to 100 (English at 0 for a text
        without a clue, so that clients reading [0] always find one)."""
        fields = await parameters(request, service.limits.max_body_bytes)
        keys.check(fields.get("api_key"))
        q = fields.get("q")
        if not q:
            raise BadRequest("Invalid request: missing q parameter")
        if not isinstance(q, str):
            raise BadRequest(f"q must be a string, not {type(q).__name__}")
        service.check_texts([q])
        return [d.json() for d in detector.rank(q) or [Detected(SOURCE, 0.0)]]

    return routes


async def _translated(fields: dict, service: Service, detector: Detector) -> dict:
    """The answer to POST /translate: text or HTML, the source given or detected."""
    q, alternatives, html = _checked(fields, service)
    texts = q if isinstance(q, list) else [q]
    decode = service.translator.decode
    decode = replace(decode, beam_size=max(decode.beam_size, alternatives + 1))
    pages = await service.read_html(texts) if html else None
    detected = None
    if fields.get("source") == "auto":
        readable = [page.text for page in pages] if pages is not None else texts  # HTML: without its markup
        detected = [detector.best(text, SOURCE) for text in readable]
        _check_detected(detected)
    if pages is not None:
        done = await service.translate_html(pages, decode, alternatives + 1)
    else:
        done = await service.translate(texts, decode, alternatives + 1)
    best = [nbest[0].text for nbest in done.translations]
    answer: dict = {"translatedText": best if isinstance(q, list) else best[0]}
    if detected is not None:
        found = [d.json() for d in detected]
        answer["detectedLanguage"] = found if isinstance(q, list) else found[0]
    if alternatives:
        others = [[t.text for t in nbest[1:]] for nbest in done.translations]
        answer["alternatives"] = others if isinstance(q, list) else others[0]
    if done.notes:
        answer["notes"] = done.notes
    return answer


def _check_detected(detected: list[Detected]) -> None:
    """LibreTranslate's answer to a text in a language it has no model from to the target."""
    for found in detected:
        if found.language != SOURCE:
            raise BadRequest(f"{LANGUAGES[TARGET]} ({TARGET}) is not available as a target language from "
                             f"{LANGUAGES[found.language]} ({found.language}): the text was detected as "
                             f"{LANGUAGES[found.language]} (confidence {found.confidence:g}); this server "
                             f"translates {LANGUAGES[SOURCE]} ({SOURCE}) to {LANGUAGES[TARGET]} ({TARGET})")


def _checked(fields: dict, service: Service) -> tuple[str | list[str], int, bool]:
    """q, the number of alternatives asked for, and whether q is HTML; BadRequest for anything
    LibreTranslate refuses."""
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
    text_format = fields.get("format") or "text"
    if text_format not in FORMATS:
        raise BadRequest(f"format {text_format!r} is not supported: send text or html")
    return q, _alternatives(fields.get("alternatives", 0), service.limits.max_alternatives), text_format == "html"


def _alternatives(value, most: int) -> int:
    try:
        count = int(value) if not isinstance(value, (bool, float)) else None
    except (TypeError, ValueError):
        count = None
    if count is None or not 0 <= count <= most:
        raise BadRequest(f"alternatives must be a whole number from 0 to {most}, got {value!r}")
    return count
