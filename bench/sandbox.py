"""The sandbox's cost: starting a sandboxed command, and a connection through the egress proxy.

Process start: N runs each of ``true`` and ``python3 -c pass``, alternating unsandboxed
(``sandbox: off``) and sandboxed (``auto``, bubblewrap here), each through
:func:`runner.sandbox.session.launch` (the policy resolved, the command line built) and
``subprocess.Popen`` with the launch's hooks (``started``, ``ended``: the process-count
watcher) up to the process's exit: the path the shell tool, checks and guards take. The
same with a network allowlist adds the in-sandbox bridge (``socat`` on 127.0.0.1:3128
forwarding to the proxy's socket, waited for before the program starts). End to end: N calls
of ``ShellTool.execute("true")`` each way (patterns, environment, output capture, process
group). Figures are the median and p99 of wall-clock times; "added" is the median of the
per-pair differences.

Proxied connections: a loopback HTTP server serving a 1 KiB page; M fetches (a new
connection each, ``urllib``) from one Python process, which runs unsandboxed straight to the
server, and sandboxed with ``network: {allow: ["localhost:PORT"]}``, through the bridge and
the egress proxy (which resolves and checks each request and reports its decision); the
process times each fetch itself. The proxy's own start (``EgressProxy.start()``: the
process, proxy.py's import, listening on its socket) and stop are timed K times.

Run: python bench/sandbox.py [--runs 200] [--fetches 200] [--proxy-starts 10]
Needs bubblewrap, prlimit and socat (Debian/Ubuntu: apt-get install bubblewrap socat).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.processes import confined_environment  # noqa: E402
from runner.sandbox import bwrap, session  # noqa: E402
from runner.sandbox.proxy import EgressProxy  # noqa: E402
from runner.spec import SandboxSpec, ShellToolSpec  # noqa: E402
from runner.tools.shell import ShellTool  # noqa: E402

PAGE = b"x" * 1024

FETCHER = """\
import json, sys, time, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
opener = urllib.request.build_opener()
times = []
for _ in range(count):
    started = time.perf_counter()
    with opener.open(url, timeout=30) as answer:
        assert len(answer.read()) == 1024
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def line(label: str, values: list[float], unit: float = 1000.0) -> str:
    return (
        f"  {label:<46} median {statistics.median(values) * unit:7.2f} ms, "
        f"p99 {p99(values) * unit:7.2f} ms"
    )


def run_launched(spec: SandboxSpec, argv: list[str], workdir: Path) -> float:
    """Seconds from :func:`session.launch` to the process's exit, as a tool runs it."""
    started = time.perf_counter()
    launch = session.launch(
        spec,
        argv,
        cwd=workdir,
        env=confined_environment(()),
        workdir=workdir,
        source="shell",
    )
    process = subprocess.Popen(
        launch.argv,
        cwd=workdir,
        env=launch.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    launch.started(process.pid)
    code = process.wait()
    launch.ended(code)
    elapsed = time.perf_counter() - started
    if code != 0:
        sys.exit(f"{argv} ended with exit code {code} ({'sandboxed' if launch.sandboxed else ''})")
    return elapsed


def paired(
    runs: int, plain: Callable[[], float], boxed: Callable[[], float]
) -> tuple[list[float], list[float], list[float]]:
    """``runs`` alternating pairs (after 5 of each to warm up): both timings, their differences."""
    for _ in range(5):
        plain(), boxed()
    first: list[float] = []
    second: list[float] = []
    for index in range(runs):
        if index % 2 == 0:
            first.append(plain())
            second.append(boxed())
        else:
            second.append(boxed())
            first.append(plain())
    return first, second, [b - a for a, b in zip(first, second, strict=True)]


def process_start(runs: int, workdir: Path, port: int) -> None:
    off = SandboxSpec(mode="off")
    auto = SandboxSpec(mode="auto")
    probe = session.launch(
        auto, ["true"], cwd=workdir, env=confined_environment(()), workdir=workdir, source="shell"
    )
    if not probe.sandboxed:
        sys.exit(f"bubblewrap does not run here: {bwrap.unavailable()}")
    print(f"process start, {runs} runs each way (wall clock, launch() to exit):")
    for argv in (["true"], ["python3", "-c", "pass"]):
        plain, boxed, added = paired(
            runs,
            lambda argv=argv: run_launched(off, argv, workdir),
            lambda argv=argv: run_launched(auto, argv, workdir),
        )
        name = " ".join(argv)
        print(line(f"{name}, unsandboxed", plain))
        print(line(f"{name}, sandboxed", boxed))
        print(line(f"{name}, added by the sandbox (pairs)", added))
    sandbox = session.RunSandbox("bench", "bench")
    token = session.enter(sandbox)
    try:
        allow = SandboxSpec(mode="auto", network=(f"localhost:{port}",))
        run_launched(allow, ["true"], workdir)  # starts the proxy once
        plain, bridged, added = paired(
            runs,
            lambda: run_launched(auto, ["true"], workdir),
            lambda: run_launched(allow, ["true"], workdir),
        )
        print(line("true, sandboxed with an allowlist (bridge)", bridged))
        print(line("true, added by the bridge (pairs)", added))
    finally:
        session.leave(token)
        sandbox.close()


def shell_tool(runs: int, workdir: Path) -> None:
    def tool(mode: str) -> ShellTool:
        spec = ShellToolSpec(commands=("true",), sandbox=SandboxSpec(mode=mode))
        return ShellTool(spec, workdir, (), 60.0, 65_536)

    def timed(shell: ShellTool) -> float:
        started = time.perf_counter()
        result = shell.execute("true")
        elapsed = time.perf_counter() - started
        assert result.exit_code == 0, result.text
        return elapsed

    off, auto = tool("off"), tool("auto")
    plain, boxed, added = paired(runs, lambda: timed(off), lambda: timed(auto))
    print(f"the shell tool, ShellTool.execute('true'), {runs} calls each way:")
    print(line("unsandboxed", plain))
    print(line("sandboxed", boxed))
    print(line("added by the sandbox (pairs)", added))


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def fetch_times(spec: SandboxSpec, url: str, fetches: int, workdir: Path) -> list[float]:
    launch = session.launch(
        spec,
        ["python3", "-c", FETCHER, url, str(fetches)],
        cwd=workdir,
        env=confined_environment(()),
        workdir=workdir,
        source="shell",
    )
    done = subprocess.run(
        launch.argv, cwd=workdir, env=launch.env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"the fetches failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    times: list[float] = json.loads(done.stdout)
    return times


def proxied(fetches: int, starts: int, workdir: Path, port: int) -> None:
    url = f"http://localhost:{port}/page"
    direct = fetch_times(SandboxSpec(mode="off"), url, fetches, workdir)
    sandbox = session.RunSandbox("bench", "bench")
    token = session.enter(sandbox)
    try:
        allow = SandboxSpec(mode="auto", network=(f"localhost:{port}",))
        through = fetch_times(allow, url, fetches, workdir)
    finally:
        session.leave(token)
        sandbox.close()
    decided = [event for event in sandbox.take() if type(event).__name__ == "ConnectionDecided"]
    print(f"a 1 KiB page from a loopback server, {fetches} fetches in one process:")
    print(line("direct, unsandboxed", direct))
    print(line("sandboxed, through the bridge and the proxy", through))
    print(
        f"  added per fetch (medians): {(statistics.median(through) - statistics.median(direct)) * 1000:.2f} ms; "
        f"{len(decided)} connections recorded by the proxy"
    )
    opened: list[float] = []
    closed: list[float] = []
    for _ in range(starts):
        proxy = EgressProxy((f"localhost:{port}",), lambda decision: None)
        started = time.perf_counter()
        proxy.start()
        opened.append(time.perf_counter() - started)
        started = time.perf_counter()
        proxy.close()
        closed.append(time.perf_counter() - started)
    print(f"the egress proxy, {starts} starts:")
    print(line("EgressProxy.start() until it listens", opened))
    print(line("EgressProxy.close()", closed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="process starts each way")
    parser.add_argument("--fetches", type=int, default=200, help="fetches each way")
    parser.add_argument("--proxy-starts", type=int, default=10)
    options = parser.parse_args()
    for missing in (bwrap.unavailable(), bwrap.network_unavailable()):
        if missing:
            sys.exit(missing)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, load average {load:.2f} at the start")
    # A workdir outside /tmp's hidden tmpfs would not matter: the workdir is bound in.
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder).resolve()
        process_start(options.runs, workdir, port)
        shell_tool(options.runs, workdir)
        proxied(options.fetches, options.proxy_starts, workdir, port)
    server.shutdown()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
