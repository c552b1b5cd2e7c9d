"""Serving a model over HTTP (scripts/serve.py, docs/serving.md): app.py the FastAPI app and its
operations routes, libretranslate.py and native.py the translating APIs, translation.py what they
share, settings.py every default stated once, batcher.py cross-request batching, requests.py bodies
within limits, keys.py API keys, metrics.py the Prometheus metrics."""
