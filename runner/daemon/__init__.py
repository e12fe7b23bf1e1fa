"""The daemon: ``agentrun daemon DIR`` keeps agents running on their triggers.

Read in this order:

- :mod:`~runner.daemon.lifecycle` -- :class:`Daemon`: the lock, signals, main loop and
  shutdown; it wires the parts below together and carries out what the planner decides.
- :mod:`~runner.daemon.requests` -- its answers to requests: status, the agent list,
  manual fires and cancels (the control socket's and the API's).
- :mod:`~runner.daemon.planner` -- the decisions (install triggers, due cron slots,
  catch-up, concurrency, recovery), with the clock and the store passed in and no I/O.
- :mod:`~runner.daemon.continuation` -- paused runs continued once decided, and
  interrupted ones after a restart (``on_interrupt``).
- :mod:`~runner.daemon.state` -- the data they share: a :class:`Fire`, an agent's state.
- :mod:`~runner.daemon.specs` -- the spec-folder rescan.
- :mod:`~runner.daemon.control` -- the control socket (``daemon status``, ``stop``,
  ``trigger``) and its client.
- :mod:`~runner.daemon.http` -- the HTTP server (webhooks, the API, the console).
- :mod:`~runner.daemon.watching` -- file watching (spec folders, watch triggers).
- :mod:`~runner.daemon.executor` -- where runs execute: the pool of warm worker processes.
- :mod:`~runner.daemon.worker` -- the worker process's entry point
  (``python -m runner.daemon.worker``).
- :mod:`~runner.daemon.celery_executor` -- where runs execute past one machine: one Celery
  task per run (``--executor celery``), with :mod:`~runner.daemon.celery_app` (the app both
  sides share) and :mod:`~runner.daemon.celery_worker` (``agentrun worker``).

This package imports nothing when imported itself: the CLI's control client
(:mod:`runner.daemon.control`) stays light, and ``agentrun validate`` never loads the daemon.
"""
