"""The HTTP service: `python -m agr_jax.serve` (starlette on uvicorn).

app.py (routes, limits), batcher.py (concurrent requests share one device call),
metrics.py (Prometheus text), static/index.html (the webcam page).
"""
