"""The lab fleet for end-to-end tests: real namespaced hosts, real sshd, ufw, proftpd.

Runs as root (CI is root). Without root the lab tests skip locally, but fail in CI
(CI=true): a lab test that did not run proves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_LAB = Path(os.environ.get("TEST_LAB_DIR", ROOT / ".lab-test"))
# A lab of its own (names, subnet, folder) so a demo lab can stay up beside it.
os.environ.update(LAB_DIR=str(TEST_LAB), LAB_PREFIX="fxt", LAB_SUBNET="10.213.78")
sys.path.insert(0, str(ROOT))
from driver import LabDriver  # noqa: E402
from lab.netns_hosts import exec_in  # noqa: E402

N_HOSTS = 5


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def lab_back_to_baseline(request):
    """One failed lab test must not fail the ones after it. A test that edits group data
    and fails before its own clean-up would leave every later test on its edit (CI saw
    one flaky assertion turn into 29 failures): after each test, group data is put back
    as it was, and after a failed test the fleet is converged to it again."""
    labs = [request.getfixturevalue(name) for name in request.fixturenames
            if name in ("lab", "slab")]
    before = [(d, group_data_files(d)) for d in labs]
    yield
    failed = getattr(request.node, "report_call", None) is None or request.node.report_call.failed
    for driver, files in before:
        changed = group_data_files(driver) != files
        if changed:
            for path in (driver.lab_dir / "group_data").glob("*.py"):
                path.unlink()
            for name, text in files.items():
                (driver.lab_dir / "group_data" / name).write_text(text)
        if failed or changed:
            driver.deploy("-y")


def group_data_files(driver) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((driver.lab_dir / "group_data").glob("*.py"))}


def require_root_lab(what: str) -> None:
    """Lab tests need root on Linux: skip without it locally, fail in CI (a lab test
    that did not run proves nothing)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("lab tests must run in CI, and CI must run as root on Linux")
        pytest.skip(f"{what} need root on Linux")


def machine_snapshot() -> dict[str, str]:
    """The control machine's own firewall and /etc/ufw: the lab must never touch them."""
    snap = {}
    for tool in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([tool], capture_output=True, text=True).stdout
        snap[tool] = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
    for path in sorted(Path("/etc/ufw").rglob("*")) + [Path("/etc/default/ufw")]:
        if path.is_file():
            snap[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snap


class Lab(LabDriver):
    lab_dir = TEST_LAB

    def __init__(self) -> None:
        self.info = json.loads((TEST_LAB / "lab.json").read_text())
        self.hosts = {h["name"]: h for h in self.info["hosts"]}
        self.control_ip = self.info["control_ip"]

    def by_kind(self, kind: str) -> list[str]:
        return [n for n, h in self.hosts.items() if h["kind"] == kind]

    def ip(self, name: str) -> str:
        return self.hosts[name]["ip"]

    def sh(self, name: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
        """A shell command inside a lab host, as if typed at its console."""
        return exec_in(name, "sh", "-c", script, check=check)

    def state_files(self) -> dict[str, str]:
        """Hashes of every host's UFW state files and ProFTPd conf.d."""
        snap = {}
        for name in self.hosts:
            hd = TEST_LAB / "hosts" / name
            for path in sorted([*(hd / "etc-ufw").glob("*"), hd / "default-ufw",
                                *(hd / "etc-proftpd/conf.d").glob("*")]):
                if path.is_file():
                    snap[str(path.relative_to(TEST_LAB))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return snap



def results(output: str) -> dict[str, tuple[str, ...]]:
    """pyinfra's results table: operation -> (hosts, success, error, no change)."""
    rows = {}
    section = output.split("--> Results:")[-1]
    for line in section.splitlines():
        m = re.match(r"\s+(froxlor firewall \| .+?)\s{2,}(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", line)
        if m:
            rows[m.group(1)] = m.groups()[1:]
    return rows


@pytest.fixture(scope="session")
def lab():
    require_root_lab("lab tests (network namespaces)")
    before = machine_snapshot()
    subprocess.run([sys.executable, str(ROOT / "lab/lab.py"), "down"], capture_output=True)
    up = subprocess.run([sys.executable, str(ROOT / "lab/lab.py"), "up", str(N_HOSTS)],
                        capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    the_lab = Lab()
    the_lab.machine_before = before  # type: ignore[attr-defined]
    yield the_lab
    subprocess.run([sys.executable, str(ROOT / "lab/lab.py"), "down"], capture_output=True)
