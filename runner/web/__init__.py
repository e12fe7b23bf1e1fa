"""The HTTP face of agentrun: the JSON API, and later the console's pages.

One ASGI app (FastAPI) that ``agentrun console`` serves over the run store alone and that
the daemon will serve with its own routes (webhooks, agents, triggers) passed in; this
package never imports the daemon or the CLI. FastAPI, pydantic and uvicorn are imported
only here and inside the ``console`` command, never on ``import runner``::

    app.py     create_app(): the app, login, the auth middleware, JSON errors
    auth.py    the token in console.token, the session cookie, CSRF (no framework)
    api.py     /api/v1: runs, events (JSON, JSONL, SSE), approvals; pydantic models
    feed.py    one poller of the run event log, fanned out to every SSE stream
    state.py   what requests share: the store behind a lock, the token
"""
