"""Shared test helpers: fixtures captured from real ufw, a pyinfra host with faked facts."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

from pyinfra.api import Config, Inventory, State
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from froxlor_fleet.facts import FleetHostState
from froxlor_fleet.remote import program

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
UFW_FIXTURES = FIXTURES / "ufw-0.36.2"


def fact_lines(scenario: str) -> list[str]:
    """The ``FleetHostState`` command's real output for a captured scenario."""
    return (UFW_FIXTURES / scenario / "fact-output.txt").read_text().splitlines()


def with_fragment(lines: list[str], text: str | None, loaded: str | bool | None = True) -> list[str]:
    """Fact output with the fragment section replaced (``None``: no fragment) and the
    loaded-fragment marker: ``True`` (ProFTPd loaded this fragment), ``None`` (no
    marker) or the marker's text."""
    import hashlib

    if ":::froxlor-fleet:loaded" not in lines:  # scenarios captured before the marker
        lines = lines[:]
        lines.insert(lines.index(":::froxlor-fleet:fragment"), ":::froxlor-fleet:loaded")
    start = lines.index(":::froxlor-fleet:loaded") + 1
    lines = lines[:start] + lines[lines.index(":::froxlor-fleet:fragment"):]
    sha = hashlib.sha256(text.encode()).hexdigest() if text is not None else None
    marker = sha if loaded is True else (loaded or None)
    if marker:
        lines.insert(start, marker)
    cut = lines.index(":::froxlor-fleet:fragment") + 1
    lines = lines[:cut]
    if text is not None:
        lines += [sha, *text.splitlines()]
    return lines


def make_inventory(groups: dict[str, tuple[list, dict]], all_data: dict | None = None,
                   override: dict | None = None) -> Inventory:
    hosts: list = []
    for members, _ in groups.values():
        for m in members:
            name = m[0] if isinstance(m, tuple) else m
            if name not in [h[0] if isinstance(h, tuple) else h for h in hosts]:
                hosts.append(m)
    return Inventory((hosts, all_data or {}), override_data=override, **groups)


@contextmanager
def fake_host(fact_output: list[str], diff: bool = False, stage=StateStage.Prepare):
    """A pyinfra host whose ``FleetHostState`` fact is parsed from ``fact_output``.
    Yields ``(host, noops)``; ``noops`` collects ``host.noop`` messages."""
    inventory = Inventory((["testhost"], {}))
    config = Config()
    config.DIFF = diff
    state = State(inventory, config)
    state.current_stage = stage
    host = inventory.get_host("testhost")
    noops: list[str] = []

    def get_fact(self, cls, *args, **kwargs):
        assert cls is FleetHostState, f"unexpected fact {cls}"
        return cls().process(list(fact_output))

    with patch.object(type(host), "get_fact", get_fact), \
         patch.object(type(host), "noop", lambda self, msg: noops.append(msg)), \
         ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(host):
        yield host, noops


def load_case(path: Path) -> dict:
    return json.loads(path.read_text())


def build_fact(spec: dict) -> list[str]:
    """Fact output for an operation case: a captured scenario, with optional overrides
    of whole sections (``rules4``, ``rules6``, ``running``, ``ssh``, ``ufw``,
    ``proftpd``), ``addrs`` (the host's own addresses as state.sh writes them, each with
    its flags: ``addrs_from_ip`` makes them from ``ip -o addr show``'s output),
    ``conf``/``default`` key=value edits, the ``fragment`` text, and
    ``ftp_tree``: a tree under tests/fixtures/proftpd/ that the real host-side dump
    script reads as the host's ``/`` (``ftp_edits``: ``{file: [[old, new], ...]}`` made
    to a copy of it first)."""
    sections: dict[str, list[str]] = {}
    order: list[str] = []
    current = None
    for line in fact_lines(spec["scenario"]):
        if line.startswith(":::froxlor-fleet:"):
            current = line.split(":")[-1]
            order.append(current)
            sections[current] = []
        else:
            sections[current].append(line)
    for name in ("rules4", "rules6", "running", "ssh", "ufw", "proftpd", "systemd"):
        if name in spec:
            value = spec[name]
            sections[name] = value if isinstance(value, list) else [value]
    if "ftp_tree" in spec:
        sections["ftp"] = ftp_dump(spec["ftp_tree"], spec.get("ftp_edits", {}), spec.get("ftp_files"))
        order.insert(order.index("fragment"), "ftp")  # with_fragment() cuts after "fragment"
    if "addrs" in spec:  # captured before the addrs section existed; state.sh's place
        sections["addrs"] = list(spec["addrs"])
        order.insert(order.index("ufw"), "addrs")
    if "tenants" in spec:  # captured before the tenants section existed
        sections["tenants"] = list(spec["tenants"])
        order.insert(order.index("fragment"), "tenants")
    if "ftp" not in sections:
        sections["ftp"] = []
        order.insert(order.index("fragment"), "ftp")
    # Scenarios captured before the FTP dump say "is proftpd installed" in a section of
    # their own ("proftpd": [] in a case: not installed); the dump says it with @bin.
    sections["ftp"][:0] = [f"@bin proftpd {line.strip()}" for line in sections.pop("proftpd", [])
                           if line.strip()]
    if "proftpd" in order:
        order.remove("proftpd")
    for daemon, pid in spec.get("ftp_running", {}).items():  # as the dump's pidfile check says
        sections["ftp"].append(f"@run {daemon} {pid}")
    sections.get("ftp", []).extend(spec.get("ftp_lines", []))  # e.g. "@bin pure-ftpd-mysql ..."
    for name in ("conf", "default"):
        for key, value in spec.get(name, {}).items():
            sections[name] = [f"{key}={value}" if line.startswith(f"{key}=") else line
                              for line in sections[name]]
    lines: list[str] = []
    for name in order:
        lines.append(f":::froxlor-fleet:{name}")
        lines += sections[name]
    return with_pure_marker(with_fragment(lines, spec.get("fragment"), spec.get("loaded", True)),
                            spec.get("pure_loaded", True))


def addrs_from_ip(ip_output: str, tmp_path: Path) -> list[str]:
    """The addrs section the real state.sh writes on a host whose ``ip -o addr show``
    prints ``ip_output`` (a fake ``ip`` first on PATH; iptables answers nothing): never
    this machine's interfaces or firewall."""
    tools = tmp_path / "addrs-tools"
    tools.mkdir()
    (tools / "ip").write_text(f"#!/bin/sh\ncat <<'EOF'\n{ip_output}EOF\n")
    (tools / "iptables").write_text("#!/bin/sh\nexit 1\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "SSH_CONNECTION": ""}
    out = subprocess.run(["sh", "-c", program("state.sh"), "froxlor-fleet"], capture_output=True,
                         text=True, env=env, timeout=30, check=True).stdout.splitlines()
    start = out.index(":::froxlor-fleet:addrs") + 1
    end = next(i for i in range(start, len(out)) if out[i].startswith(":::froxlor-fleet:"))
    return out[start:end]


def with_pure_marker(lines: list[str], loaded: str | bool | None) -> list[str]:
    """Fact output with pure-ftpd's loaded-range marker: ``True`` (pure-ftpd loaded the
    files the ``@pure`` lines show), ``None`` (no marker) or the marker's text."""
    from froxlor_fleet.operations import ftpplan

    files: dict[str, str | None] = {}
    for line in lines:
        if line.startswith("@pure "):
            key, _, value = line[len("@pure "):].partition(" ")
            files[key] = value
    marker = ftpplan.pureftpd_files_digest(files) if loaded is True else (loaded or None)
    at = lines.index(":::froxlor-fleet:loaded")
    return lines[:at] + [":::froxlor-fleet:pureloaded"] + ([marker] if marker else []) + lines[at:]


def ftp_dump(tree: str, edits: dict[str, list[list[str]]],
             files: dict[str, str] | None = None) -> list[str]:
    """The real ``remote/proftpd_dump.sh`` run over a copy of a fixture tree (as the
    host's /), with ``edits`` (``{file: [[old, new], ...]}``) and ``files`` (written)."""
    import shutil
    import tempfile

    from froxlor_fleet.ftpconf.dump import dump_script

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        shutil.copytree(FIXTURES / "proftpd" / tree, root, symlinks=True)
        for name, text in (files or {}).items():
            (root / name).write_text(text)
        for name, changes in edits.items():
            text = (root / name).read_text()
            for old, new in changes:
                assert old in text, (name, old)
                text = text.replace(old, new)
            (root / name).write_text(text)
        out = subprocess.run(["sh", "-c", dump_script(), "froxlor-fleet", str(root)],
                             capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


# --- ufw's own code on rule files in a folder ---------------------------------------------

UFW_HOME = Path("/usr/lib/python3/dist-packages")
FAKE_IPTABLES = ("#!/bin/sh\n"
                 "[ \"$1\" = -V ] && echo 'iptables v1.8.9 (nf_tables)' && exit 0\nexit 1\n")


def ufw_sandbox(root: Path, monkeypatch) -> Path:
    """ufw's Python modules (the system's ufw package) set up to work on files below
    ``root`` - never /etc/ufw, and never the machine's firewall: ufw's iptables calls go
    to a stub that only answers ``-V``. Returns ``root/etc`` with ufw's folders made.
    Fails in CI, skips elsewhere, when ufw is not installed."""
    import gettext
    import os
    import sys
    import warnings

    import pytest

    if not (UFW_HOME / "ufw" / "frontend.py").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("ufw is not installed; CI must run this test")
        pytest.skip("ufw is not installed")
    if str(UFW_HOME) not in sys.path:
        monkeypatch.syspath_prepend(str(UFW_HOME))
    gettext.NullTranslations().install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ufw.common
        import ufw.frontend
    sbin = root / "sbin"
    sbin.mkdir()
    for tool in ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore"):
        (sbin / tool).write_text(FAKE_IPTABLES)
        (sbin / tool).chmod(0o755)
    monkeypatch.setattr(ufw.common, "do_checks", False)
    monkeypatch.setattr(ufw.common, "iptables_dir", str(sbin))
    etc = root / "etc"
    (etc / "ufw" / "applications.d").mkdir(parents=True)
    (etc / "default").mkdir()
    return etc
