"""A request of any size reaches the host (issue 22): the kernel refuses a single
argument over 128 KiB (MAX_ARG_STRLEN, E2BIG), which a UFW request passed at about 400
sources. Requests travel on the guarded step's stdin instead.

The commands are built by the real operations; the host side is run for real on this
machine: ``remote/step.sh`` (detached, under a lock in a temporary folder), the runner
that picks ufw's Python, ``remote/switch_step.sh``, and the shipped program's own
``read_request``. Only what would change UFW is left out: the program is cut before its
``main()`` and prints what it read.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import StringCommand
from pyinfra.api.state import StateStage

from froxlor_fleet import firewall, passive_switch
from froxlor_fleet.plan import RuleSpec
from froxlor_fleet.steps import STEP_SCRIPT
from helpers import build_fact, fake_host

MAX_ARG_STRLEN = 131072  # linux/binfmts.h: 32 pages
SOURCES = 2000


def big_rules() -> list[RuleSpec]:
    v4 = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(SOURCES // 2)]
    v6 = [str(ipaddress.IPv6Address((0x20010DB8 << 96) + i)) for i in range(SOURCES // 2)]
    return ([RuleSpec(("22",), "tcp", src, "ssh") for src in v4 + v6]
            + [RuleSpec(("80", "443"), "tcp", None, "web")])


def ufw_commands(confirm_timeout: int) -> list[StringCommand]:
    with fake_host(build_fact({"scenario": "pristine"}), stage=StateStage.Execute):
        return [c for c in firewall.rules_and_policies._inner(
            rules=big_rules(), confirm_timeout=confirm_timeout, lockout_guard=False)
            if isinstance(c, StringCommand)]


@pytest.mark.parametrize("confirm_timeout", [0, 60])
def test_no_argument_of_a_big_ufw_step_passes_the_kernels_limit(confirm_timeout: int) -> None:
    [*_, step] = ufw_commands(confirm_timeout)
    words = shlex.split(step.get_raw_value())
    assert max(len(w.encode()) for w in words) < MAX_ARG_STRLEN
    request = json.loads(step.connector_arguments["_stdin"])
    assert len(request["wanted"]) == SOURCES + 1


def test_no_argument_of_a_big_range_switch_passes_the_kernels_limit() -> None:
    switch = passive_switch.Switch(old=(49152, 65534), new=(50000, 50100), keep=(),
                                   if_switched={"wanted": [r.dport for r in big_rules()] * 40},
                                   if_not={"wanted": []})
    step = passive_switch.ftp_step(switch, "true")
    assert max(len(w.encode()) for w in shlex.split(step.get_raw_value())) < MAX_ARG_STRLEN
    assert set(json.loads(step.connector_arguments["_stdin"])) == {"if_switched", "if_not"}


def reading_program() -> str:
    """The shipped host program up to its ``main()``, then: print what it read."""
    text = firewall.remote_script()
    cut = text.rindex('if __name__ == "__main__":')
    return text[:cut] + ("request = read_request(sys.argv[1:], sys.stdin)\n"
                         "print(len(request['wanted']), request.get('purge'))\n")


def run_on_this_machine(command: StringCommand, tmp_path: Path) -> subprocess.CompletedProcess:
    raw = command.get_raw_value()
    return subprocess.run(["sh", "-c", raw], input=command.connector_arguments.get("_stdin"),
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                               "FROXLOR_FLEET_LOCK": str(tmp_path / "lock")})


def test_a_big_request_reaches_the_program_through_the_guarded_step(tmp_path: Path) -> None:
    [*_, step] = ufw_commands(0)
    request = step.connector_arguments["_stdin"]
    assert len(request) > 2 * MAX_ARG_STRLEN
    command = StringCommand("sh", "-c", shlex.quote(STEP_SCRIPT), "froxlor-fleet", "--stdin",
                            "sh", "-c", shlex.quote(firewall.RUN_WITH_UFW_PYTHON),
                            shlex.quote(reading_program()), "-", _stdin=request)
    res = run_on_this_machine(command, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(SOURCES + 1), "False"]


@pytest.mark.parametrize("daemon_step,key", [("exit 0", "if_switched"), ("exit 4", "if_not")])
def test_the_range_switch_hands_the_program_the_request_its_outcome_needs(
        tmp_path: Path, daemon_step: str, key: str) -> None:
    [*_, step] = ufw_commands(0)
    big = json.loads(step.connector_arguments["_stdin"])
    requests = {"if_switched": big, "if_not": {**big, "purge": True}}
    switch = passive_switch.Switch(old=(49152, 65534), new=(50000, 50100), keep=(),
                                   if_switched=requests["if_switched"],
                                   if_not=requests["if_not"])
    command = passive_switch.ftp_step(switch, daemon_step)
    # the shipped program, cut before main(): swap it in for the one the step names
    raw = command.get_raw_value().replace(shlex.quote(firewall.remote_script()),
                                          shlex.quote(reading_program()))
    res = run_on_this_machine(StringCommand(raw, _stdin=command.connector_arguments["_stdin"]),
                              tmp_path)
    assert res.returncode == (0 if key == "if_switched" else 4), res.stderr
    assert f"{SOURCES + 1} {key == 'if_not'}\n" in res.stdout  # the step relays both streams
