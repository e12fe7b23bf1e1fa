"""The bubblewrap command line of a sandboxed process, and whether bubblewrap works here.

:func:`command` wraps a program's argv as::

    prlimit --cpu=S:S+1 --as=BYTES --fsize=BYTES --core=0 --
      bwrap --ro-bind / / --dev /dev --proc /proc
            --tmpfs /home --tmpfs /root --tmpfs /run --tmpfs /tmp --tmpfs $HOME
            --ro-bind READABLE... --ro-bind WORKDIR --bind WRITABLE...
            --tmpfs AGENTRUN_HOME --remount-ro AGENTRUN_HOME --ro-bind /dev/null STORE_FILE...
            --unshare-user --unshare-ipc --unshare-pid --unshare-net --unshare-uts
            --unshare-cgroup-try --die-with-parent --new-session --cap-drop ALL
            --chdir CWD -- PROGRAM ARGS...

Mounts apply in order, so a path made visible after a tmpfs shows through it (a workdir
in the home folder), and agentrun's own home, covered last, stays hidden even inside the
workdir. bubblewrap always sets ``PR_SET_NO_NEW_PRIVS``. The PID namespace's first process
is bubblewrap's own init: when the program exits it exits, and the kernel kills every
process left in the namespace, so nothing started in the sandbox outlives the program.

With a network allowlist the program starts behind a small ``/bin/sh`` script that runs
``socat`` listening on ``127.0.0.1:3128`` inside the sandbox's own network namespace and
forwarding to the egress proxy's Unix socket, bound in at :data:`PROXY_SOCKET`; the
program's environment names it in ``HTTP_PROXY`` and ``HTTPS_PROXY`` (both cases).

(The layout follows what Claude Code's sandbox-runtime and Codex's Linux sandbox do:
a read-only root, an unshared network reached through a bridged Unix socket.)
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from .policy import SandboxPolicy

#: Where the egress proxy's socket appears inside the sandbox.
PROXY_SOCKET = "/run/agentrun/egress.sock"
#: The port the in-sandbox bridge listens on, on 127.0.0.1.
PROXY_PORT = 3128
#: Size of a tmpfs that only hides a folder (writes there are thrown away): 16 MiB.
HIDING_TMPFS_BYTES = 16 * 2**20
#: Exit codes bubblewrap's init returns for a program killed by a signal: 128 + the signal.
SIGNAL_EXIT_BASE = 128

_BRIDGE = (
    "socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{socket} "
    "</dev/null >/dev/null 2>&1 &\n"
    "i=0; while [ $i -lt 300 ] && ! grep -q ':{hexport} 00000000:0000 0A' /proc/net/tcp; "
    "do sleep 0.01; i=$((i+1)); done\n"
    'exec "$@"'
)


@functools.cache
def _sizes_supported() -> bool:
    """Whether this bubblewrap takes ``--size`` (0.7 and later) to cap a tmpfs."""
    try:
        help_text = subprocess.run(
            [shutil.which("bwrap") or "bwrap", "--help"],
            capture_output=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"--size" in help_text


@functools.cache
def unavailable() -> str | None:
    """Why bubblewrap cannot sandbox a process on this machine now, or None when it can.

    Probes once per process: ``bwrap`` on ``PATH``, then a real sandbox with every
    namespace the policy uses (``bwrap --ro-bind / / --unshare-all --die-with-parent
    true``), which fails where unprivileged user namespaces are disabled.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is not installed"
    try:
        probe = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap cannot be started: {error}"
    if probe.returncode != 0:
        detail = probe.stderr.decode("utf-8", errors="replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit code {probe.returncode}"
        return (
            f"bubblewrap cannot create its namespaces here ({reason}); unprivileged user "
            "namespaces may be disabled"
        )
    return None


def network_unavailable() -> str | None:
    """Why a network allowlist cannot be bridged into a sandbox here, or None."""
    if shutil.which("socat") is None:
        return "socat is not installed (Debian/Ubuntu: apt-get install socat)"
    return None


def limits_prefix(policy: SandboxPolicy) -> list[str]:
    """``prlimit`` and the policy's rlimits, ending with ``--``; [] without prlimit.

    CPU seconds (soft limit: SIGXCPU; a second later, SIGKILL), address space and file size
    (bytes), no core files. The process count is not an rlimit here (Linux does not apply
    ``RLIMIT_NPROC`` to root, and for other users it counts all their processes): the
    session counts the sandbox's processes itself.
    """
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return []
    limits = policy.limits
    cpu = max(int(limits.cpu_time), 1)
    return [
        prlimit,
        f"--cpu={cpu}:{cpu + 1}",
        f"--as={limits.memory}",
        f"--fsize={limits.file_size}",
        "--core=0",
        "--",
    ]


def command(
    policy: SandboxPolicy, argv: list[str], cwd: Path, proxy_socket: Path | None = None
) -> list[str]:
    """The argv that runs ``argv`` in ``cwd`` inside the sandbox ``policy`` describes.

    Args:
        policy: the resolved sandbox.
        argv: the program and its arguments (the program is looked up on ``PATH`` inside).
        cwd: the working folder (absolute); visible inside, as every path keeps its name.
        proxy_socket: the egress proxy's Unix socket on this machine, for a policy with a
            network allowlist; None means no network at all.
    """
    bwrap = shutil.which("bwrap") or "bwrap"
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for folder in policy.hidden_first:
        # The private /tmp holds at most the file size limit; a hiding tmpfs next to nothing.
        size = policy.limits.file_size if folder == Path("/tmp") else HIDING_TMPFS_BYTES
        args += [*(["--size", str(size)] if _sizes_supported() else []), "--tmpfs", str(folder)]
    for path in policy.readable:
        args += ["--ro-bind", str(path), str(path)]
    if policy.workdir not in policy.writable:
        args += ["--ro-bind", str(policy.workdir), str(policy.workdir)]
    for path in policy.writable:
        args += ["--bind", str(path), str(path)]
    for folder in policy.hidden_last:
        # Read-only too: a write into agentrun's home fails instead of landing in a tmpfs.
        args += [*(["--size", "4096"] if _sizes_supported() else []), "--tmpfs", str(folder)]
        args += ["--remount-ro", str(folder)]
    for file in policy.hidden_files:
        args += ["--ro-bind", "/dev/null", str(file)]
    if proxy_socket is not None:
        args += ["--ro-bind", str(proxy_socket), PROXY_SOCKET]
    args += [
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--chdir",
        str(cwd),
        "--",
    ]
    if proxy_socket is not None:
        script = _BRIDGE.format(port=PROXY_PORT, socket=PROXY_SOCKET, hexport=f"{PROXY_PORT:04X}")
        args += ["/bin/sh", "-c", script, "agentrun-egress"]
    return [*limits_prefix(policy), *args, *argv]


def proxy_environment() -> dict[str, str]:
    """The variables that send a sandboxed program's HTTP(S) through the bridge."""
    url = f"http://127.0.0.1:{PROXY_PORT}"
    return {
        "HTTP_PROXY": url,
        "HTTPS_PROXY": url,
        "http_proxy": url,
        "https_proxy": url,
        "NO_PROXY": "",
        "no_proxy": "",
    }


def limit_signal(returncode: int | None, sandboxed: bool) -> str | None:
    """The limit a process's exit says it hit (``cpu_time``, ``file_size``), or None.

    A process killed by SIGXCPU or SIGXFSZ ends with ``-signal`` unsandboxed and with
    ``128 + signal`` from bubblewrap's init.
    """
    if returncode is None:
        return None
    signal = returncode - SIGNAL_EXIT_BASE if sandboxed else -returncode
    return {24: "cpu_time", 25: "file_size"}.get(signal)
