"""The namespace lab's settings, read from the environment when first imported
(``LAB_DIR``, ``LAB_PREFIX``, ``LAB_SUBNET``: set them before importing any ``lab``
module), and its hosts' names, addresses and roles."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
PREFIX = os.environ.get("LAB_PREFIX", "fxl")  # names: fxl-br, fxl-h1 (netns), fxl-v1 (veth)
SUBNET = os.environ.get("LAB_SUBNET", "10.213.77")
BRIDGE = f"{PREFIX}-br"
CONTROL_IP = f"{SUBNET}.1"
V6_PREFIX = "fd00:{}:{}::".format(*SUBNET.split(".")[1:3])  # a ULA /64 per lab
CONTROL_IP6 = f"{V6_PREFIX}1"
SUDO_USER = "fleet"  # non-root login with passwordless sudo, on every host

# Roles of the example fleet, repeated as the lab grows: like a real froxlor fleet.
HOST_PATTERN = [
    ("web", ["web_servers", "ftp_servers"]),
    ("web", ["web_servers", "ftp_servers"]),
    ("mail", ["mail_servers"]),
    ("dns", ["dns_servers"]),
    ("db", ["db_servers"]),
]


def host_names(n: int) -> list[str]:
    return [f"lab-h{i}" for i in range(1, n + 1)]


def host_ip(i: int) -> str:
    return f"{SUBNET}.{10 + i}"


def host_ip6(i: int) -> str:
    return f"{V6_PREFIX}{10 + i}"
