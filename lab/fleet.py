"""The namespace lab as a whole: ``up N`` (idempotent: makes what is missing, shrinks by
starting over) and ``down`` (every namespace, link, process and file it made)."""

from __future__ import annotations

import json
import os
import shutil
import signal

from lab.access import ensure_key
from lab.common import die, ensure_bridge, preflight, run
from lab.config import (
    BRIDGE,
    CONTROL_IP,
    CONTROL_IP6,
    LAB_DIR,
    PREFIX,
    SUBNET,
    SUDO_USER,
    host_ip,
    host_ip6,
    host_names,
)
from lab.inventory import write_inventory
from lab.netns_hosts import known_names, start_host, sudo_login_out_of_reach, write_host_files
from lab.pristine import ensure_packages, pristine_tree
from lab.services import start_services, wait_ssh


def up(n: int) -> None:
    preflight()
    if LAB_DIR.resolve().is_relative_to("/run"):
        die(f"LAB_DIR {LAB_DIR} must not be under /run (each host gets a private /run)")
    if not 1 <= n <= 200:
        die("N must be between 1 and 200")
    ensure_packages()
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    info = LAB_DIR / "lab.json"
    current = len(json.loads(info.read_text())["hosts"]) if info.exists() else 0
    if current > n:
        down()
        LAB_DIR.mkdir(parents=True, exist_ok=True)
    try:
        tree = pristine_tree()
        ensure_key()
        ensure_bridge(BRIDGE, CONTROL_IP, CONTROL_IP6)
        for i, name in enumerate(host_names(n), 1):
            hd = write_host_files(i, name, tree)
            start_host(i, name, hd)
            start_services(name, hd)
            if unreachable := sudo_login_out_of_reach(name):
                raise RuntimeError(f"{name}: the sudo user {SUDO_USER} cannot reach "
                                   f"{', '.join(unreachable)}: its login would fail")
        wait_ssh([host_ip(i) for i in range(1, n + 1)] + [host_ip6(i) for i in range(1, n + 1)])
        write_inventory(n)
    except Exception as e:  # clean up what we made, then report one line
        down(quiet=True)
        die(f"up failed, lab removed: {e}")
    print(f"lab: {n} host(s) up on {BRIDGE} ({SUBNET}.0/24); inventory: {LAB_DIR / 'inventory.py'}")



def down(quiet: bool = False) -> None:
    preflight()
    for name in known_names():
        for pidfile in ("holder.pid", "unshare.pid"):
            try:  # PID 1 of the host: killing it ends every process in that host
                pid = int((LAB_DIR / "hosts" / name / pidfile).read_text())
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
    netns = run("ip", "netns", "list", check=False).stdout.split("\n")
    for line in netns:
        ns = line.split(" ")[0]
        if ns.startswith(f"{PREFIX}-h"):
            run("ip", "netns", "del", ns, check=False)
    links = run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        dev = line.split(":")[1].strip().split("@")[0]
        if dev == BRIDGE or dev.startswith(f"{PREFIX}-v"):
            run("ip", "link", "del", dev, check=False)
    if LAB_DIR.exists():
        shutil.rmtree(LAB_DIR)
    if not quiet:
        print("lab: down")
