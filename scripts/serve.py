#!/usr/bin/env python
"""Serve a model over HTTP: the LibreTranslate API, a native endpoint, health and metrics, with
sentences from concurrent requests decoded together in batches (docs/serving.md).

  python scripts/serve.py --model exports/sample-ct2-int8      # a CTranslate2 export (recommended)
  python scripts/serve.py --run runs/sample                    # a run's PyTorch model
  curl -s localhost:5000/translate -H 'Content-Type: application/json' \\
       -d '{"q": "I am hungry.", "source": "en", "target": "fr"}'

Ctrl-C or SIGTERM stops taking requests, answers those accepted, and exits 0.
"""
from __future__ import annotations

import argparse
import signal
from pathlib import Path

from transformer_mt.cli import add_model_flags, main_guard, open_translator
from transformer_mt.errors import UserError
from transformer_mt.serving.settings import BatchingConfig, Limits, ServeConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=5000)
    batching = parser.add_argument_group("batching across requests")
    batching.add_argument("--max-batch-tokens", type=int, default=BatchingConfig.max_batch_tokens,
                          help="source tokens a batch gathers")
    batching.add_argument("--max-wait-ms", type=float, default=BatchingConfig.max_wait_ms,
                          help="how long a batch waits for more requests")
    batching.add_argument("--queue-size", type=int, default=BatchingConfig.queue_sentences,
                          help="sentences waiting at most; more get 429")
    batching.add_argument("--no-batching", action="store_true", help="one request at a time (for comparison)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-chars", type=int, default=Limits.max_chars, help="characters per request")
    limits.add_argument("--max-texts", type=int, default=Limits.max_texts, help="texts in one request's list")
    limits.add_argument("--max-body-bytes", type=int, default=Limits.max_body_bytes)
    limits.add_argument("--timeout", type=float, default=Limits.timeout_s,
                        help="seconds before an unanswered request gets 503")
    limits.add_argument("--drain-seconds", type=float, default=ServeConfig.drain_seconds,
                        help="at Ctrl-C/SIGTERM, how long accepted requests may take to finish")
    security = parser.add_argument_group("security")
    security.add_argument("--api-keys", type=Path, help="a file of API keys, one per line: requests must carry one")
    security.add_argument("--cors-origin", action="append", default=[],
                          help="an origin whose web pages may call this server (repeatable; default: none)")
    args = parser.parse_args()
    config = _config(args)
    try:
        from transformer_mt.serving.app import create_app
        from transformer_mt.serving.keys import ApiKeys
    except ImportError as err:
        raise UserError(f"serving needs the serve extra ({err.name} is missing): pip install -e '.[serve]'") from None

    keys = ApiKeys.from_file(args.api_keys)
    translator = open_translator(args)
    for note in translator.notes:
        print(note, flush=True)
    import uvicorn

    app = create_app(translator, config, keys)
    print(f"serving {args.model or translator.checkpoint} on http://{args.host}:{args.port} "
          f"(the API at /docs; Ctrl-C to stop)", flush=True)
    # uvicorn drains on Ctrl-C/SIGTERM, then raises the signal again for the handler it found: finding
    # this one, a clean shutdown exits 0 instead of dying by the signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                  timeout_graceful_shutdown=int(args.drain_seconds),
                                  log_level="info", access_log=True)).run()
    return 0


def _config(args: argparse.Namespace) -> ServeConfig:
    for flag in ("max_batch_tokens", "queue_size", "max_chars", "max_texts", "max_body_bytes"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    for flag in ("max_wait_ms", "timeout", "drain_seconds"):
        if not getattr(args, flag) >= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be a number of at least 0, got {getattr(args, flag)}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be from 0 to 65535, got {args.port}")
    return ServeConfig(BatchingConfig(args.max_batch_tokens, args.max_wait_ms, args.queue_size, not args.no_batching),
                       Limits(args.max_chars, args.max_texts, args.max_body_bytes, timeout_s=args.timeout),
                       tuple(args.cors_origin), args.drain_seconds)


if __name__ == "__main__":
    main_guard(main)
