"""fakedet serve: the HTTP moderation service (Starlette + uvicorn + prometheus-client,
the `serve` extra, imported only when the service runs).

    config.py   settings and their parsing     body.py     streaming, size-limited bodies
    batcher.py  dynamic batching, admission    service.py  decode pool + batcher + metrics
    app.py      routes, auth, limits           metrics.py  Prometheus metrics
    openapi.py  /openapi.json and /docs        console.html  the page at GET /
    server.py   uvicorn with graceful SIGTERM  cli.py      `fakedet serve`
"""
