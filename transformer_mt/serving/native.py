"""POST /v1/translate: everything our decoder can do (beam size, n-best with scores, length limits and
penalty), validated by typed request models; FastAPI documents it at /docs."""
from __future__ import annotations

from dataclasses import replace
from typing import Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from ..config import ConfigError
from .keys import ApiKeys
from .requests import BadRequest
from .translation import Service


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | list[str] = Field(description="a text, or a list of texts translated independently")
    beam_size: int | None = Field(None, ge=1, description="1 = greedy; default: the model's decode section")
    nbest: int = Field(1, ge=1, description="hypotheses returned per text, best first (at most beam_size)")
    max_len_a: float | None = Field(None, ge=0, description="length limit: a × source tokens + b")
    max_len_b: int | None = Field(None, ge=0)
    min_len: int | None = Field(None, ge=0)
    length_penalty: Literal["gnmt", "power"] | None = None
    alpha: float | None = Field(None, ge=0)


class Hypothesis(BaseModel):
    text: str
    score: float = Field(description="the search's score: summed log-probability after the length penalty")


class TranslateResponse(BaseModel):
    translations: list[list[Hypothesis]] = Field(description="per text, its n-best")
    notes: list[str] = Field(default_factory=list, description="e.g. a text cut at the model's positions")


def router(service: Service, keys: ApiKeys) -> APIRouter:
    routes = APIRouter()

    @routes.post("/v1/translate", response_model=TranslateResponse)
    async def translate(request: TranslateRequest, x_api_key: str | None = Header(None)) -> TranslateResponse:
        keys.check(x_api_key)
        texts = service.check_texts(request.text if isinstance(request.text, list) else [request.text])
        decode = _decode(service, request)
        done = await service.translate(texts, decode, request.nbest)
        return TranslateResponse(translations=[[Hypothesis(text=t.text, score=t.score) for t in nbest]
                                               for nbest in done.translations], notes=done.notes)

    return routes


def _decode(service: Service, request: TranslateRequest):
    given = {name: value for name in ("beam_size", "max_len_a", "max_len_b", "min_len", "length_penalty", "alpha")
             if (value := getattr(request, name)) is not None}
    if given.get("beam_size", 1) > service.limits.max_beam:
        raise BadRequest(f"beam_size is at most {service.limits.max_beam} on this server")
    try:
        decode = replace(service.translator.decode, **given)
    except ConfigError as err:
        raise BadRequest(str(err)) from None
    if request.nbest > decode.beam_size:
        raise BadRequest(f"nbest ({request.nbest}) cannot exceed beam_size ({decode.beam_size})")
    return decode
