"""The routes of ``hashsdk serve``, one module a resource, each with ``add_routes(app)``:

    status.py   GET /, /healthz, /stats, /metrics: the page, health, counters
    search.py   POST /search
    items.py    POST /items, GET and DELETE /items/{id}, GET /items/{id}/thumbnail

A new route goes into its resource's module (or a new module, added to ``ROUTES``).
"""

from hashsdk.serve.routes import items, search, status

ROUTES = (status, search, items)
