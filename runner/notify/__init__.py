"""Notifications: telling people where they are that a run needs them, failed or finished.

A spec's ``notify:`` channels (and the daemon's default ones, ``agentrun daemon --notify``)
are Apprise URLs, their secrets written ``${NAME}`` and read from the environment at send
time. A follower reads the run event log and sends each event a channel opted into, off the
run's path, with retries and a timeout; every delivery is claimed and recorded in the run
store (``notifications``), so an event reaches a channel once, whoever saw it first::

    channels.py   Channel: a URL template and its events; ${NAME} substitution and masking
    messages.py   what a message says for each event (pure)
    delivery.py   Sender: Apprise in a thread pool, retries with backoff, every attempt recorded
    follower.py   NotifyFollower: the run event log -> which channel hears of what

Apprise is imported only in :mod:`runner.notify.delivery`, when a message is sent.
"""
