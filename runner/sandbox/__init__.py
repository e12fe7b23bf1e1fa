"""The sandbox of every process agentrun starts on an agent's behalf, and its egress proxy.

The ``shell`` tool (and the check commands that run through it), stdio MCP servers and
command guards start programs; the spec's ``sandbox`` (see ``docs/security.md``) decides
how they run:

- ``policy.py``  the spec's sandbox resolved for one machine: absolute writable, readable
                 and hidden paths (the home folder, agentrun's own home, the run store, the
                 seal key), the network allowlist, the limits;
- ``bwrap.py``   the bubblewrap command line for a policy, and whether bubblewrap works here;
- ``egress.py``  the allowlist applied: which address a listed name may be reached at
                 (the entries' grammar is :mod:`runner.spec.egress_rules`, shared with
                 ``http_request`` and the spec's checks);
- ``proxy.py``   the egress proxy: a proxy.py process on a Unix socket, one per run and
                 source, that applies the rules and reports every connection;
- ``proxy_plugin.py`` its proxy.py plugin, imported only in the proxy's own process;
- ``session.py`` one run's sandbox: wraps each process, starts proxies, watches the
                 process count, and hands what happened (connections, limits hit) to the
                 run's record.

Nothing here reads the model's words: the policy comes from the spec alone.
"""

from __future__ import annotations
