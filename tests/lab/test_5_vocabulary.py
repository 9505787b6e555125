"""The rule vocabulary on real hosts (issue 13): ``ssh_rate_limit`` makes SSH a ufw
``limit`` that refuses a source's 6th new connection within 30 s; an extra ``deny``
cuts one source out of a port a role opens, because it goes before the allows;
``web_http3`` opens 443/udp. Each test puts the data back and deploys it again, also
when it fails (the SSH rule is only ever changed by the deploy: deleting it by hand
would lock the lab out)."""

from __future__ import annotations

import time

from lab.netns_hosts import exec_in
from labtools import EXPECTED, assert_no_change, connect
from test_2_faults import converge
from test_4_safety import Data

# ufw's limit (src/backend_iptables.py: "-m recent --set", then "-m recent --update
# --seconds 30 --hitcount 6 -j ufw-user-limit", whose last rule is a plain REJECT).
# xt_recent counts the connection being checked, so within 30 s the first 5 new
# connections get in and the 6th and later are refused (ICMP port unreachable:
# connect() fails at once with "connection refused").
WINDOW = 30
QUIET = WINDOW + 2  # every earlier connection of a source has aged out of the count

PROBE = """
import socket, sys
ip, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "tcp":
        socket.create_connection((ip, port), timeout=2).close()
        print("connected")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((ip, port))
        s.send(b"x")
        s.recv(1)
        print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
"""


def probe_from(lab, name: str, ip: str, port: int, proto: str = "tcp") -> str:
    """A new connection from inside lab host ``name``, another source than the control
    side: connected, refused (admitted, nothing listens) or timeout (dropped)."""
    res = exec_in(name, "python3", "-c", PROBE, ip, str(port), proto, check=False)
    return res.stdout.strip() or f"error: {res.stderr.strip()}"


def udp_from_control(ip: str, port: int) -> str:
    """One UDP datagram from the control side: refused (admitted, nothing listens: the
    host's ICMP port unreachable) or timeout (dropped)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect((ip, port))
        try:
            s.send(b"x")
            s.recv(1)
            return "connected"
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return "timeout"


def test_ssh_rate_limit_refuses_the_sixth_new_connection_within_30_s(lab) -> None:
    converge(lab)
    dns = lab.by_kind("dns")[0]
    ip = lab.ip(dns)
    try:
        with Data(lab) as data:
            data.add("dns_servers", "ssh_rate_limit = True\n")
            res = lab.deploy("-y", "--limit", dns)
            assert res.returncode == 0, res.out
            added = lab.show_added(dns)
            assert "ufw limit 22/tcp comment 'froxlor-fleet:ssh rate-limit'" in added, added
            assert "ufw allow 22/tcp comment 'froxlor-fleet:ssh'" not in added
            assert_no_change(lab.deploy("-y", "--limit", dns))
            # the deploys' own SSH connections count too: let them age out first
            time.sleep(QUIET)
            outcomes = [connect(ip, 22) for _ in range(7)]
            assert outcomes == ["connected"] * 5 + ["refused"] * 2, outcomes
            # the count is per source: another host still gets in
            assert probe_from(lab, lab.by_kind("mail")[0], ip, 22) == "connected"
    finally:
        # The probes' count must age out before the deploy can connect again. With the
        # data back, the deploy turns the rule back into allow.
        time.sleep(QUIET)
        restored = lab.deploy("-y", "--limit", dns)
    assert restored.returncode == 0, restored.out
    added = lab.show_added(dns)
    assert "ufw allow 22/tcp comment 'froxlor-fleet:ssh'" in added, added
    assert not any(line.startswith("ufw limit") for line in added), added
    assert [connect(ip, 22) for _ in range(7)] == ["connected"] * 7
    converge(lab)


def test_extra_deny_cuts_one_source_out_of_a_port_a_role_opens(lab) -> None:
    converge(lab)
    web = lab.by_kind("web")[0]
    other = lab.by_kind("mail")[0]
    ip = lab.ip(web)
    assert connect(ip, 80) != "timeout"  # the web role admits the control side
    deny = ('firewall_extra_rules = [{"port": 80, "action": "deny", '
            f'"sources": ["{lab.control_ip}"]}}]\n')
    try:
        with Data(lab) as data:
            data.add("web_servers", deny)
            dry = lab.deploy("--dry", "--diff", "--limit", web)
            assert dry.returncode == 0, dry.out
            line = f"+ deny 80/tcp from {lab.control_ip}  (extra, before allows)"
            assert line in dry.out, dry.out
            res = lab.deploy("-y", "--limit", web)
            assert res.returncode == 0, res.out
            assert (f"ufw deny from {lab.control_ip} to any port 80 proto tcp "
                    "comment 'froxlor-fleet:extra'") in lab.show_added(web)
            # ufw's first match wins: the deny is rule 1, before the web role's allow
            numbered = lab.sh(web, "ufw status numbered").stdout
            first = next(line for line in numbered.splitlines() if line.startswith("[ 1]"))
            assert "80/tcp" in first and "DENY IN" in first and lab.control_ip in first, numbered
            assert connect(ip, 80) == "timeout"  # ufw's deny drops
            assert connect(ip, 443) != "timeout"  # only port 80, only this source:
            assert probe_from(lab, other, ip, 80) in ("connected", "refused")  # others get in
            assert_no_change(lab.deploy("-y", "--limit", web))
    finally:
        restored = lab.deploy("-y", "--limit", web)
    assert restored.returncode == 0, restored.out
    assert sorted(lab.show_added(web)) == sorted(EXPECTED["web"])
    assert connect(ip, 80) != "timeout"  # reopened
    converge(lab)


def test_web_http3_opens_443_udp(lab) -> None:
    converge(lab)
    web = lab.by_kind("web")[0]
    ip = lab.ip(web)
    assert udp_from_control(ip, 443) == "timeout"  # closed: ufw drops it
    try:
        with Data(lab) as data:
            data.add("web_servers", "web_http3 = True\n")
            dry = lab.deploy("--dry", "--diff", "--limit", web)
            assert "+ allow 443/udp  (web)" in dry.out, dry.out
            res = lab.deploy("-y", "--limit", web)
            assert res.returncode == 0, res.out
            added = lab.show_added(web)
            assert "ufw allow 443/udp comment 'froxlor-fleet:web'" in added, added
            assert sorted(added) == sorted(EXPECTED["web"] + [
                "ufw allow 443/udp comment 'froxlor-fleet:web'"])
            # admitted; nothing listens on UDP 443 in the lab: the kernel's ICMP says so
            assert udp_from_control(ip, 443) == "refused"
            assert_no_change(lab.deploy("-y", "--limit", web))
    finally:
        restored = lab.deploy("-y", "--limit", web)
    assert restored.returncode == 0, restored.out
    assert sorted(lab.show_added(web)) == sorted(EXPECTED["web"])
    converge(lab)
