"""The HTTP service: the LibreTranslate API, the native endpoint, health, readiness and Prometheus
metrics, over one batcher and one copy of the model. Every error is JSON: {"error": "..."}."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from ..decoding.translator import TextTranslator
from . import libretranslate, native
from .batcher import Batcher
from .detection import Detector
from .keys import ApiKeys
from .metrics import Metrics
from .requests import BadRequest
from .settings import ServeConfig
from .translation import Service

PAGE = Path(__file__).with_name("page.html")  # the web page, served by the app itself


def create_app(translator: TextTranslator, config: ServeConfig, keys: ApiKeys) -> FastAPI:
    metrics = Metrics()
    batcher = Batcher(translator, config.batching, metrics)
    service = Service(translator, batcher, config.limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        batcher.stop(config.drain_seconds)

    app = FastAPI(title="transformer-mt", summary="English→French translation", lifespan=lifespan)
    app.state.batcher, app.state.metrics = batcher, metrics
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key"])
    app.include_router(libretranslate.router(service, keys, Detector()))
    app.include_router(native.router(service, keys))
    _operations(app, batcher, metrics)
    _errors(app)
    app.add_middleware(Measured, metrics=metrics)
    return app


def _operations(app: FastAPI, batcher: Batcher, metrics: Metrics) -> None:
    page = PAGE.read_text(encoding="utf-8")  # served by the app itself: no CDN, works offline

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness: the model is loaded and the batching worker alive."""
        if batcher.alive:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"error": "not ready: the batching worker is not running"}, 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, err: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(err)}, err.status, headers=err.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, err.status_code, headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in err.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, 400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(err).__name__}: {err}"}, 500)


class Measured:
    """Counts and times every HTTP request by route and status: a plain ASGI middleware (Starlette's
    @app.middleware costs a task and a stream per request, a large part of a request's time here)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), 500

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")  # the router sets it in this scope
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.monotonic() - started)
