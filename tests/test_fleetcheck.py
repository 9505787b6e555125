"""Pre-connect validation sees exactly what pyinfra will use, and stops before connecting.

Real ``pyinfra`` CLI runs against fake hosts: every host's ``ssh_hostname`` is
127.0.0.1 on a port where a trap listens, accepts and hangs up. The trap counts
connections, so "stopped before connecting" is measured, not inferred from output.
Nothing ever runs on this machine: no host is ``@local`` and the trap speaks no SSH.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "examples" / "deploy.py"


class Trap:
    """A TCP listener on 127.0.0.1 that counts connections and closes each at once."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


def host(name: str, trap: Trap) -> str:
    return repr((name, {"ssh_hostname": "127.0.0.1", "ssh_port": trap.port}))


def write_fleet(tmp: Path, trap: Trap, groups: dict[str, list[str]],
                group_data: dict[str, str], inventory_name: str = "inventory.py") -> None:
    lines = ["from froxlor_fleet.fleetcheck import check_fleet"]
    lines += [f"{group} = [{', '.join(host(h, trap) for h in hosts)}]"
              for group, hosts in groups.items()]
    lines.append("check_fleet(__file__)")
    (tmp / inventory_name).write_text("\n".join(lines) + "\n")
    write_group_data(tmp / "group_data", group_data)


def write_group_data(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for group, text in files.items():
        (folder / f"{group}.py").write_text(textwrap.dedent(text))


def pyinfra(tmp: Path, *args: str, inventory: str = "inventory.py") -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "pyinfra", inventory, str(DEPLOY),
                          "--dry", *args], cwd=tmp, capture_output=True, text=True,
                         env=env, timeout=120)
    return res.returncode, res.stdout + res.stderr


WEB = {"web_servers": 'froxlor_roles = ["web"]\n'}


def assert_stopped_before_connecting(code: int, out: str, trap: Trap, *needles: str) -> None:
    assert code != 0, out
    assert trap.count == 0, out
    assert "Connecting to hosts" not in out
    assert "Traceback" not in out
    assert "fleet data is invalid" in out
    for needle in needles:
        assert needle in out, out


def assert_went_on_to_connect(code: int, out: str, trap: Trap) -> None:
    assert "fleet data is invalid" not in out, out
    assert trap.count >= 1, out  # pyinfra tried to connect: validation let it through


def test_the_trap_proves_connection_attempts(tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]}, WEB)
    assert_went_on_to_connect(*pyinfra(tmp_path), trap)


def test_bad_group_data_stops_before_connecting(tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]},
                {"web_servers": 'froxlor_roles = ["web", "wbe"]\nfirewall_logging = "loud"\n'})
    assert_stopped_before_connecting(  # one line per problem
        *pyinfra(tmp_path), trap,
        "\n  host web1 (group web_servers): froxlor_roles = 'wbe': unknown role",
        "\n  host web1 (group web_servers): firewall_logging = 'loud': must be one of")


def test_bad_dash_dash_data_stops_before_connecting(tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]}, WEB)
    assert_stopped_before_connecting(
        *pyinfra(tmp_path, "--data", "firewall_logging=verbose"), trap,
        "host web1 (--data): firewall_logging = 'verbose'")


def test_bad_group_data_option_stops_before_connecting(tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]}, WEB)
    write_group_data(tmp_path / "extra", {"web_servers": 'firewall_enabled = "yes"\n'})
    assert_stopped_before_connecting(
        *pyinfra(tmp_path, "--group-data", "extra"), trap,
        "host web1 (group web_servers): firewall_enabled = 'yes'")


def test_valid_group_data_option_is_accepted(tmp_path: Path, trap: Trap) -> None:
    # mysql needs mysql_allowed_sources: only --group-data provides it
    write_fleet(tmp_path, trap, {"db_servers": ["db1"]},
                {"db_servers": 'froxlor_roles = ["mysql"]\n'})
    write_group_data(tmp_path / "extra", {"db_servers": 'mysql_allowed_sources = ["10.0.0.0/8"]\n'})
    assert_went_on_to_connect(*pyinfra(tmp_path, "--group-data", "extra"), trap)


def test_group_named_after_the_inventory_file_is_seen(tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, {"web_servers": ["web1"]},
                {**WEB, "production": 'firewall_default_incoming = "drop"\n'},
                inventory_name="production.py")
    assert_stopped_before_connecting(
        *pyinfra(tmp_path, inventory="production.py"), trap,
        "host web1 (group production): firewall_default_incoming = 'drop'")


def test_ssh_port_option_is_seen(tmp_path: Path, trap: Trap) -> None:
    # --port is the port pyinfra connects to and the ssh_port the firewall opens
    write_fleet(tmp_path, trap, {"ftp_servers": ["ftp1"]}, {"ftp_servers": textwrap.dedent("""
        froxlor_roles = ["ftp"]
        ftp_passive_ports = (40000, 40100)
    """)})
    assert_stopped_before_connecting(*pyinfra(tmp_path, "--port", "40050"), trap,
                                     "overlaps port 40050/tcp opened by 'ssh'")


FLEET = {"web_servers": ["web1", "web2"], "db_servers": ["db1"]}
BAD_DB = {**WEB, "db_servers": 'froxlor_roles = ["mysql"]\n'}  # no mysql_allowed_sources


@pytest.mark.parametrize("limit", ["web_servers", "web*", "web1"])
def test_problems_outside_the_limit_warn_and_do_not_block(tmp_path: Path, trap: Trap,
                                                          limit: str) -> None:
    write_fleet(tmp_path, trap, FLEET, BAD_DB)
    code, out = pyinfra(tmp_path, "--limit", limit)
    assert_went_on_to_connect(code, out, trap)
    assert "not targeted by this run" in out and "host db1: mysql_allowed_sources" in out


def test_problems_inside_the_limit_still_stop(tmp_path: Path, trap: Trap) -> None:
    write_fleet(tmp_path, trap, FLEET, BAD_DB)
    assert_stopped_before_connecting(*pyinfra(tmp_path, "--limit", "db_servers"), trap,
                                     "host db1: mysql_allowed_sources")
    assert_stopped_before_connecting(*pyinfra(tmp_path), trap, "host db1")


def test_excluded_hosts_problems_do_not_block(tmp_path: Path, trap: Trap) -> None:
    # (pyinfra_cli is not imported here: it monkey-patches the test process for gevent)
    usage = subprocess.run([sys.executable, "-m", "pyinfra", "--help"], capture_output=True,
                           text=True, timeout=60).stdout
    if "--exclude" not in usage:
        pytest.skip("this pyinfra has no --exclude (added after 3.8)")
    write_fleet(tmp_path, trap, FLEET, BAD_DB)
    code, out = pyinfra(tmp_path, "--exclude", "db1")
    assert_went_on_to_connect(code, out, trap)


# --- the loader's use of pyinfra_cli, held against pyinfra's own CLI helpers --------------
# (in a subprocess: importing pyinfra_cli monkey-patches the process for gevent)

PARITY = r'''
import json
from unittest import mock
import pyinfra_cli.cli as cli
from pyinfra.api import Inventory
from froxlor_fleet.model import loading

inventory = Inventory((["web1", "web2", "db1", "mail1"], {}),
                      web_servers=(["web1", "web2"], {}), db_servers=(["db1"], {}))
patterns = [["web_servers"], ["web*"], ["db1"], ["nomatch"], ["db_servers", "mail*"], ["*"]]
names = lambda hosts: sorted(h.name for h in hosts)
limit = {}
for p in patterns:
    theirs = names(cli._apply_inventory_limit(inventory, p) or [])
    ours = names(loading.target_hosts(inventory, p))
    with mock.patch.dict("sys.modules", {"pyinfra_cli.cli": None}):  # helper gone: fallback
        fallback = names(loading.target_hosts(inventory, p))
    limit[" ".join(p)] = [theirs, ours, fallback]
options = loading.InventoryOptions("x.py", "/", data=("a=1", "b=true", "c=[1, 2]", "d=x=y"),
                                   ssh=(("ssh_port", 2222), ("ssh_user", "deploy")))
theirs = cli._set_override_data(options.data, "deploy", None, None, 2222, None)
print(json.dumps({"limit": limit, "data": [theirs, loading.override_data(options)]}))
'''


def test_limit_and_data_match_pyinfra_cli_exactly() -> None:
    res = subprocess.run([sys.executable, "-c", PARITY], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    for pattern, (theirs, ours, fallback) in found["limit"].items():
        assert theirs == ours == fallback, pattern
    assert found["limit"]["web*"][0] == ["web1", "web2"]
    theirs, ours = found["data"]
    assert theirs == ours == {"a": 1, "b": True, "c": [1, 2], "d": "x=y", "ssh_port": 2222,
                              "ssh_user": "deploy"}


API_LOAD = r'''
from pyinfra_cli.inventory import make_inventory
from pyinfra.api import State
from pyinfra.context import ctx_state
from froxlor_fleet.model.validation import FleetDataError
with ctx_state.use(State()):
    try:
        make_inventory("inventory.py", cwd=".")
    except FleetDataError as error:
        print("REFUSED", *error.errors, sep="\n")
    else:
        print("ACCEPTED")
'''


def test_check_fleet_outside_the_pyinfra_command_checks_every_host(tmp_path: Path,
                                                                   trap: Trap) -> None:
    # A script that loads the inventory through pyinfra's API: no CLI options to read,
    # so every host is checked with the data found next to the file.
    write_fleet(tmp_path, trap, FLEET, BAD_DB)
    res = subprocess.run([sys.executable, "-c", API_LOAD], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = res.stdout.splitlines()
    assert lines[0] == "REFUSED", res.stdout + res.stderr
    assert [line.split(":")[0] for line in lines[1:]] == ["host db1"]
    write_fleet(tmp_path, trap, FLEET, {**BAD_DB, "db_servers": BAD_DB["db_servers"]
                                        + 'mysql_allowed_sources = ["10.0.0.0/8"]\n'})
    res = subprocess.run([sys.executable, "-c", API_LOAD], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.stdout.strip() == "ACCEPTED", res.stdout + res.stderr
    assert trap.count == 0


CANNED = Path(__file__).resolve().parent / "fakeconn"


def test_limited_run_plans_its_hosts_despite_bad_data_elsewhere(tmp_path: Path) -> None:
    # The whole run, not only the pre-connect check: a dry run with --limit prepares the
    # targeted hosts' operations (hosts from the test-only "canned" connector, which
    # answers the state read with a real capture).
    from froxlor_fleet.operations.ftpplan import render_fragment
    from helpers import build_fact

    (tmp_path / "inventory.py").write_text(
        "from froxlor_fleet.fleetcheck import check_fleet\n"
        "web_servers = ['@canned/web1']\ndb_servers = ['@canned/db1']\ncheck_fleet(__file__)\n")
    write_group_data(tmp_path / "group_data", {"web_servers": 'froxlor_roles = ["web", "ftp"]\n',
                                               **BAD_DB})
    lines = build_fact({"scenario": "converged-web-ftp",
                        "fragment": render_fragment((49152, 65534))})
    (tmp_path / "fleet.json").write_text(json.dumps({"web1": {"lines": lines},
                                                     "db1": {"lines": lines}}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(CANNED)]),
               CANNED_FLEET=str(tmp_path / "fleet.json"), CANNED_FLEET_LOG=str(tmp_path / "log"))
    res = subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", str(DEPLOY),
                          "--dry", "--limit", "web_servers"], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "not targeted by this run" in out and "fleet data is invalid" not in out
    assert "Detected changes" in out


def test_a_fleet_where_no_host_has_roles_is_said_once_before_connecting(
        tmp_path: Path, trap: Trap) -> None:
    """group_data/ not found (run from elsewhere, misnamed): every host would be left as
    it is, one line per host; the check says what is likely wrong, once."""
    write_fleet(tmp_path, trap, {"web_servers": ["web1", "web2"]}, {})
    code, out = pyinfra(tmp_path)
    assert_went_on_to_connect(code, out, trap)
    assert out.count("none of the 2 targeted hosts has froxlor_roles in its data") == 1, out
    assert "is group_data/ beside the inventory or in the current folder?" in out
    # one managed host is enough: no such line
    write_group_data(tmp_path / "group_data", WEB)
    assert "none of the" not in pyinfra(tmp_path)[1]
