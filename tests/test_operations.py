"""Operations tested the pyinfra way: one JSON case per scenario, facts in, commands out.

Cases live in tests/operations/<module>.<operation>/*.json. Facts come from output
captured from real ufw 0.36.2 (tests/fixtures), with per-case overrides. The long
scripts embedded in commands are shown as placeholders (<ufwmodel.py+ufw_apply.py>, ...); JSON requests are decoded into "requests"; the lab
tests (tests/lab/) run the real commands on real hosts.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from pyinfra.api import FunctionCommand, QuoteString, StringCommand
from pyinfra.api.state import StateStage

from froxlor_fleet import firewall, proftpd, steps
from froxlor_fleet.validation import RuleSpec
from helpers import TESTS, build_fact, fake_host, load_case

OPERATIONS = {
    "firewall.rules_and_policies": firewall.rules_and_policies,
    "proftpd.passive_ports_fragment": proftpd.passive_ports_fragment,
    "proftpd.installed_for_ftp": proftpd.installed_for_ftp,
}
PLACEHOLDERS = {
    firewall.remote_script(): "<ufwmodel.py+ufw_apply.py>",
    firewall.RUN_WITH_UFW_PYTHON: "<run-with-ufw-python>",
    steps.STEP_SCRIPT: "<step-script>",
    proftpd.APPLY_SCRIPT: "<apply-script>",
}


def render(command: StringCommand | FunctionCommand, requests: list[dict]) -> str:
    """The command as text; a JSON request to the host-side program is decoded into
    ``requests`` (shown as ``<request>``), so cases hold it as readable JSON."""
    if isinstance(command, FunctionCommand):  # steps.refuse: fails the host with a line
        return f"<refuse> {command.args[0]}"
    bits = []
    for bit in command.bits:
        if isinstance(bit, QuoteString):
            inner = bit.obj
            if isinstance(inner, StringCommand):
                bits.append("{" + render(inner, requests) + "}")
            elif isinstance(inner, str) and inner.startswith("{"):
                requests.append(json.loads(inner))
                bits.append("<request>")
            else:
                bits.append(PLACEHOLDERS.get(inner) or shlex.quote(str(inner)))
        elif isinstance(bit, StringCommand):
            bits.append(render(bit, requests))
        else:
            bits.append(str(bit))
    return command.separator.join(bits)


def cases() -> list:
    found = []
    for op_dir in sorted((TESTS / "operations").iterdir()):
        for case in sorted(op_dir.glob("*.json")):
            found.append(pytest.param(op_dir.name, case, id=f"{op_dir.name}/{case.stem}"))
    return found


def kwargs_for(op_name: str, raw: dict) -> dict:
    kwargs = dict(raw)
    if "rules" in kwargs:
        kwargs["rules"] = [RuleSpec(tuple(r["ports"]), r.get("proto", "tcp"), r.get("source"),
                                    r["label"], r.get("note", "")) for r in kwargs["rules"]]
    return kwargs


@pytest.mark.parametrize("op_name,case_path", cases())
def test_operation_case(op_name: str, case_path: Path) -> None:
    case = load_case(case_path)
    op = OPERATIONS[op_name]
    with fake_host(build_fact(case["facts"]), stage=StateStage.Execute) as (host, noops):
        kwargs = kwargs_for(op_name, case.get("kwargs", {}))
        if "exception" in case:
            with pytest.raises(Exception) as info:
                list(op._inner(**kwargs))
            assert type(info.value).__name__ == case["exception"]["name"]
            assert str(info.value) == case["exception"]["message"]
            return
        requests: list[dict] = []
        commands = [render(c, requests) for c in op._inner(**kwargs)]
    assert commands == case["commands"]
    assert requests == case.get("requests", [])
    if not commands:
        assert noops == [case["noop_description"]]
    else:
        assert noops == []


def test_every_change_case_has_a_noop_partner() -> None:
    """pyinfra style: each case that changes something is paired with the converged one."""
    for op_dir in (TESTS / "operations").iterdir():
        names = {p.stem for p in op_dir.glob("*.json")}
        noop = {n for n in names if load_case(op_dir / f"{n}.json").get("commands") == []}
        assert noop, f"{op_dir.name} has no 'already in desired state' case"
