"""The HTTP service: `python -m agr_jax.serve` (starlette on uvicorn).

app.py (routes, limits), lanes.py (crops and each detector's photos: own threads, queue
bound, 503), batcher.py (concurrent requests share one device call), warmup.py (everything
compiled before ready), metrics.py (prometheus_client), static/index.html (the page).
"""
