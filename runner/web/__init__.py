"""The HTTP face of agentrun: the JSON API and the console's pages.

One ASGI app (FastAPI) that ``agentrun console`` serves over the run store alone and that
the daemon serves with its own routes (webhooks, agents, runs started and cancelled)
passed in; this package never imports the daemon or the CLI. FastAPI, pydantic and uvicorn
are imported only here and inside the ``console`` command, never on ``import runner``::

    app.py         create_app(): the app, login, the auth middleware, JSON errors
    api.py         /api/v1: runs, events (JSON, JSONL, SSE), approvals; pydantic models
    pages.py       the console's pages (templates/, htmx in static/)
    daemon_api.py  /api/v1 of the daemon: agents, start a run, cancel, status
    operations.py  DaemonOperations: what the daemon does for the API
    feed.py        one poller of the run event log, fanned out to every SSE stream
    state.py       what requests share: the store behind a lock, the token
    auth.py        the token in console.token, the session cookie, CSRF (no framework)
    listener.py    the listening socket (TCP, Nagle off), for the console and the daemon
"""
