"""End-to-end, the FTP daemon's seams of issue 22, on the systemd lab's bookworm hosts
(systemd-nspawn, real proftpd.service and froxlor's pure-ftpd-mysql, reached over SSH
by pyinfra):

- a passive-range change tries the new ProFTPd fragment with ``proftpd -t`` without
  writing the live file: a restart in that window (froxlor's cron, logrotate) still
  loads the range UFW opens. A ``proftpd`` wrapper records the live fragment while the
  check runs and restarts ProFTPd right then, as such a cron job would.
- pure-ftpd's range written without a restart (a run killed in between) is not taken
  for converged: the deploy restarts pure-ftpd and both sides end on the range.
- nothing of a step is left behind: no step folder in /run, no backup in /tmp, no
  temporary fragment beside conf.d.
"""

from __future__ import annotations

import pytest

from conftest import machine_snapshot
from labtools import PASSIVE, ftp_transfer
from systemd_lab import FRAGMENT, assert_no_change, passive_data, systemd_lab

RELEASE = "bookworm"
NEW_RANGE = (50200, 50300)  # disjoint from PASSIVE: an offered port proves which is live
PUREFTPD_PID = "/run/pure-ftpd/pure-ftpd.pid"
PURE_RANGE = "/etc/pure-ftpd/conf/PassivePortRange"
# Ahead of /usr/sbin on root's PATH: logs the live fragment when `proftpd -t -c` (the
# check) runs, and restarts ProFTPd then, as a cron job might; then the real proftpd.
WRAPPER = "/usr/local/sbin/proftpd"
WRAPPER_LOG = "/root/proftpd-check.log"
WRAPPER_TEXT = f"""#!/bin/sh
case " $* " in *" -c "*)
  {{ echo "== check: live fragment"; cat {FRAGMENT}; }} >> {WRAPPER_LOG}
  systemctl restart proftpd
  {{ echo "== restarted on"; ss -Hltn 'sport = :21' | head -1; }} >> {WRAPPER_LOG} ;;
esac
exec /usr/sbin/proftpd "$@"
"""


@pytest.fixture(scope="module")
def slab():
    yield from systemd_lab(RELEASE)


def leftovers(slab, name: str) -> str:
    """Step folders, /tmp backups and temporary fragments the runs left ('' : none)."""
    return slab.sh(name, "ls -d /run/froxlor-fleet.?????? /tmp/tmp.* "
                         "/etc/proftpd/.froxlor-fleet-fragment.* 2>/dev/null || true").stdout


def offered_port(host) -> int:
    port, _ = ftp_transfer(host.ip, timeout=10)
    return port


def test_01_both_hosts_converge(slab) -> None:
    for ftpd in ("proftpd", "pureftpd"):
        host = slab.host(RELEASE, ftpd)
        res = slab.deploy("-y", "--limit", host.name)
        assert res.returncode == 0, res.out
        assert PASSIVE[0] <= offered_port(host) <= PASSIVE[1]
        assert leftovers(slab, host.name) == ""


def test_02_proftpd_check_never_writes_the_live_fragment(slab) -> None:
    """The range change's check runs `proftpd -t -c CANDIDATE` while the live fragment
    still holds the old range; ProFTPd restarted in that window comes back on the old
    range, which UFW still opens; then the deploy switches both sides."""
    host = slab.host(RELEASE, "proftpd")
    data = slab.group_data("ftp_servers")
    slab.sh(host.name, f"cat > {WRAPPER} <<'EOF'\n{WRAPPER_TEXT}EOF\n"
                       f"chmod 0755 {WRAPPER}; rm -f {WRAPPER_LOG}")
    try:
        slab.write_group_data("ftp_servers", passive_data(*NEW_RANGE))
        res = slab.deploy("-y", "--limit", host.name)
        assert res.returncode == 0, res.out
        log = slab.read(host.name, WRAPPER_LOG).decode()
        assert log.count("== check: live fragment") == 1, log
        checked = log.split("== check: live fragment\n", 1)[1].split("== restarted on", 1)[0]
        assert f"PassivePorts {PASSIVE[0]} {PASSIVE[1]}\n" in checked, log
        assert f"PassivePorts {NEW_RANGE[0]}" not in checked, log
        assert ":21" in log.split("== restarted on", 1)[1]  # the window's restart worked
        fragment = slab.read(host.name, FRAGMENT).decode()
        assert f"PassivePorts {NEW_RANGE[0]} {NEW_RANGE[1]}\n" in fragment
        assert NEW_RANGE[0] <= offered_port(host) <= NEW_RANGE[1]
        assert leftovers(slab, host.name) == ""
        assert_no_change(slab.deploy("-y", "--limit", host.name))
    finally:
        slab.sh(host.name, f"rm -f {WRAPPER} {WRAPPER_LOG}")
        slab.write_group_data("ftp_servers", data)
    assert slab.deploy("-y", "--limit", host.name).returncode == 0
    assert PASSIVE[0] <= offered_port(host) <= PASSIVE[1]


def test_03_pureftpd_range_written_without_a_restart_is_restarted(slab) -> None:
    """PassivePortRange written as wanted but pure-ftpd never restarted (a run killed
    between the two): the files match, the marker of what pure-ftpd loaded does not; the
    deploy restarts pure-ftpd, UFW and pure-ftpd end on the new range."""
    host = slab.host(RELEASE, "pureftpd")
    group = "pureftpd_servers"
    data = slab.group_data(group)
    try:
        slab.sh(host.name, f"printf '%s %s\\n' {NEW_RANGE[0]} {NEW_RANGE[1]} > {PURE_RANGE}")
        pid = slab.sh(host.name, f"cat {PUREFTPD_PID}").stdout
        assert PASSIVE[0] <= offered_port(host) <= PASSIVE[1]  # still on the old range
        slab.write_group_data(group, passive_data(*NEW_RANGE))
        res = slab.deploy("-y", "--limit", host.name)
        assert res.returncode == 0, res.out
        assert slab.sh(host.name, f"cat {PUREFTPD_PID}").stdout != pid  # restarted
        assert NEW_RANGE[0] <= offered_port(host) <= NEW_RANGE[1]
        assert [r for r in slab.show_added(host.name) if ":" in r.split()[2]] == [
            f"ufw allow {NEW_RANGE[0]}:{NEW_RANGE[1]}/tcp comment 'froxlor-fleet:ftp'"]
        assert leftovers(slab, host.name) == ""
        assert_no_change(slab.deploy("-y", "--limit", host.name))
    finally:
        slab.write_group_data(group, data)
    assert slab.deploy("-y", "--limit", host.name).returncode == 0
    assert PASSIVE[0] <= offered_port(host) <= PASSIVE[1]


def test_04_machine_firewall_untouched(slab) -> None:
    assert machine_snapshot() == slab.machine_before
