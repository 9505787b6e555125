"""The systemd lab for tests/lab/test_7_systemd.py: Debian 11, 12 and 13 hosts booted
with systemd as PID 1 (lab/systemd_hosts.py), in a lab of their own (folder, names,
subnet) so the namespace test lab (fxt, 10.213.78) can be up beside it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import machine_snapshot, require_root_lab, results
from driver import LabDriver
from lab import systemd_hosts

ROOT = Path(__file__).resolve().parents[2]
CFG = systemd_hosts.Config(
    lab_dir=Path(os.environ.get("TEST_SYSTEMD_LAB_DIR", ROOT / ".lab-systemd-test")).resolve(),
    prefix="fxc", subnet="10.213.82")
RELEASES = ("bullseye", "bookworm", "trixie")
# What the deploy reads and writes for UFW: compared byte for byte.
UFW_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules", "/etc/ufw/ufw.conf", "/etc/default/ufw")
FRAGMENT = "/etc/proftpd/conf.d/froxlor-fleet-passive-ports.conf"


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """lab/systemd_hosts.py with this lab's folder, prefix and subnet."""
    env = dict(os.environ, LAB_DIR=str(CFG.lab_dir), LAB_PREFIX=CFG.prefix, LAB_SUBNET=CFG.subnet)
    return subprocess.run([sys.executable, str(ROOT / "lab/systemd_hosts.py"), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


class SystemdLab(LabDriver):
    lab_dir = CFG.lab_dir

    def __init__(self) -> None:
        self.info = json.loads((CFG.lab_dir / "lab.json").read_text())
        self.hosts = {h.name: h for h in systemd_hosts.load_hosts(CFG)}
        self.control_ip = self.info["control_ip"]

    def host(self, release: str, ftpd: str = "proftpd") -> systemd_hosts.Host:
        return next(h for h in self.hosts.values() if h.release == release and h.ftpd == ftpd)

    def sh(self, name: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
        """A shell command inside the host, as if typed at its console."""
        return systemd_hosts.exec_in(CFG, name, "sh", "-c", script, check=check)

    def read(self, name: str, path: str) -> bytes:
        """A file of the host, read through its overlay from the control side."""
        return (systemd_hosts.host_dir(CFG, name) / "root" / path.lstrip("/")).read_bytes()

    def ufw_files(self, name: str) -> dict[str, str]:
        return {p: hashlib.sha256(self.read(name, p)).hexdigest() for p in UFW_FILES}

    def reboot(self, name: str) -> None:
        systemd_hosts.reboot(CFG, self.hosts[name])

    def ufw_view(self, name: str) -> dict[str, str]:
        """Everything ufw keeps or shows: its files, status and the live chains."""
        view = {p: self.read(name, p).decode() for p in UFW_FILES}
        view["status"] = self.sh(name, "ufw status verbose").stdout
        return view | self.live_chains(name)


def assert_no_change(res: subprocess.CompletedProcess) -> None:
    """pyinfra's results table: every operation ran on its hosts and changed none."""
    rows = results(res.out)  # type: ignore[attr-defined]
    assert rows, res.out  # type: ignore[attr-defined]
    for op, (hosts, success, error, no_change) in rows.items():
        assert (success, error, no_change) == ("-", "-", hosts), (op, res.out)  # type: ignore[attr-defined]


def systemd_lab(releases: str, pureftpd: bool = True, tenants: bool = False,
                froxlor: bool = False) -> Iterator[SystemdLab]:
    """The body of a module's lab fixture: the systemd hosts of ``releases`` (comma-
    separated), with pure-ftpd ones, or with the firewall's other tenants (fail2ban...),
    or with froxlor's database (MariaDB, its settings, lib/userdata.inc.php), up for the
    module and down after it."""
    require_root_lab("systemd lab tests")
    before = machine_snapshot()
    cli("down")
    try:
        started = time.monotonic()
        flags = ["--pureftpd"] * pureftpd + ["--tenants"] * tenants + ["--froxlor"] * froxlor
        up = cli("up", "--release", releases, *flags)
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"\nsystemd lab up in {time.monotonic() - started:.1f} s: {up.stdout.strip()}")
        the_lab = SystemdLab()
        the_lab.machine_before = before  # type: ignore[attr-defined]
        yield the_lab
    finally:
        down = cli("down")
        assert down.returncode == 0, down.stderr


def passive_data(low: int, high: int) -> str:
    return f'froxlor_roles = ["ftp"]\nftp_passive_ports = ({low}, {high})\n'
