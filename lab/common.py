"""What both lab kinds use (namespace hosts and systemd hosts): commands, errors, root
check, PID files. No lab settings here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def die(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr)
    sys.exit(1)


def run(*args: str, check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(args, text=True, capture_output=True, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {(res.stderr or res.stdout).strip()}")
    return res


def preflight() -> None:
    if not sys.platform.startswith("linux"):
        die("the lab needs Linux (network, mount and PID namespaces)")
    if os.geteuid() != 0:
        die("the lab needs root (it creates network namespaces); run it with sudo or as root")


def pid_alive(pidfile: Path) -> int | None:
    """The PID in ``pidfile`` if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def ensure_bridge(bridge: str, control_ip: str, control_ip6: str) -> None:
    """A lab's bridge with the control side's addresses."""
    if run("ip", "link", "show", bridge, check=False).returncode != 0:
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "addr", "add", f"{control_ip}/24", "dev", bridge)
        run("ip", "-6", "addr", "add", f"{control_ip6}/64", "dev", bridge, "nodad")
    run("ip", "link", "set", bridge, "up")
