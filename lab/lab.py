#!/usr/bin/env python3
"""A lab fleet of froxlor-like hosts on one Linux machine (run as root).

    python3 lab/lab.py up N     # create N hosts (idempotent), write inventory + group data
    python3 lab/lab.py status   # list hosts and whether sshd / proftpd answer
    python3 lab/lab.py check    # UFW state and a port check from the control side
    python3 lab/lab.py down     # remove every namespace, link, process and file it made

Each host is its own network namespace (own netfilter tables: UFW there filters only
that host), mount, UTS and PID namespace, held by one long-lived process. It gets
private copies of /etc/ufw, /etc/default/ufw, /etc/proftpd, /etc/hosts,
/etc/resolv.conf, the account files (a non-root user ``fleet`` with passwordless sudo,
next to root) and a private /run, made from the packages' pristine files, a real
sshd (key-only, a key generated here) and a real proftpd. /usr/bin/systemctl is
masked so hosts look like non-systemd servers. Hosts sit on a bridge with the
control side (10.213.77.1 and fd00:213:77::1, IPv4 and IPv6); there is no default
route and no reachable resolver.

Nothing here touches the machine's own firewall (root namespace) or /etc/ufw.

This file is the command line; the work is done by the ``lab`` package: config
(settings from the environment), pristine (packages, pristine /etc files), access (key,
shells, accounts), netns_hosts (one host), services (sshd, proftpd), inventory, fleet
(up, down) and check (status, check).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root instead of lab/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
from lab.check import check, status
from lab.common import die
from lab.fleet import down, up


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "up" and argv[1].isdigit():
        up(int(argv[1]))
    elif argv == ["down"]:
        down()
    elif argv == ["status"]:
        status()
    elif argv == ["check"]:
        check()
    else:
        die("usage: lab.py up N | down | status | check")


if __name__ == "__main__":
    main(sys.argv[1:])
