"""Operations tested the pyinfra way: one JSON case per scenario, facts in, commands out.

Cases live in tests/operations/<module>.<operation>/*.json. Facts come from output
captured from real ufw 0.36.2 (tests/fixtures), with per-case overrides. The long
scripts embedded in commands are shown as placeholders (<place>, <runner>); the host
program's transaction shows as <transaction> with its JSON request decoded into
"requests" (the random confirm token as <token>); the lab tests (tests/lab/) run the
real commands on real hosts.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from pyinfra.api import FunctionCommand, QuoteString, StringCommand
from pyinfra.api.state import StateStage

from froxlor_fleet.model import program
from froxlor_fleet.model.plan import RuleSpec
from froxlor_fleet.operations import ftp, hostprogram, ufw
from froxlor_fleet.operations.passive_switch import Switch
from helpers import TESTS, build_fact, fake_host, load_case

OPERATIONS = {
    "ufw.rules_and_policies": ufw.rules_and_policies,
    "ftp.passive_ports_fragment": ftp.passive_ports_fragment,
    "ftp.ready_for_ftp": ftp.ready_for_ftp,
    "ftp.passive_port_range": ftp.passive_port_range,
}
PLACEHOLDERS = {
    hostprogram.INSTALL_UFW: "<install-ufw>",
    hostprogram.RUNNER: "<runner>",
    program.folder(): "<program-dir>",
    **{f"{digest}  {name}": f"<sha256 {name}>" for name, digest in program.sums().items()},
}


def render(command: StringCommand | FunctionCommand, requests: list[dict]) -> str:
    """The command as text; a JSON request to the host-side program is decoded into
    ``requests`` (shown as ``<request>``), so cases hold it as readable JSON."""
    if isinstance(command, FunctionCommand):
        name = command.function.__name__
        if name == "_transaction":  # hostprogram.commands: the request on stdin
            request = json.loads(command.args[0])
            if "confirm" in request:
                assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]{16}", request["confirm"]["token"])
                request["confirm"]["token"] = "<token>"
            requests.append(request)
            if command.kwargs.get("place"):  # remote/place.py first, in the same command
                return "<place program, transaction> < <program> <request>"
            return "<transaction> < <request>"
        if name == "_report_carried":  # steps.reported
            return f"<carried in the UFW operation's transaction: {command.args[0]}>"
        return f"<refuse> {command.args[0]}"  # steps.refuse: fails the host with a line
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
        elif isinstance(bit, str) and re.fullmatch(r"[0-9a-f]+-[0-9a-f]{16}", bit):
            bits.append("<token>")  # confirm.new_token(): random
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


def kwargs_for(raw: dict) -> dict:
    kwargs = dict(raw)
    if "rules" in kwargs:
        kwargs["rules"] = [RuleSpec(tuple(r["ports"]), r.get("proto", "tcp"), r.get("source"),
                                    r["label"], r.get("note", ""), r.get("action", "allow"))
                           for r in kwargs["rules"]]
    if "switch" in kwargs:
        raw_switch = kwargs["switch"]
        kwargs["switch"] = Switch(
            old=tuple(raw_switch["old"]) if raw_switch["old"] else None,
            new=tuple(raw_switch["new"]),
            keep=tuple(RuleSpec(tuple(r["ports"]), r.get("proto", "tcp"), r.get("source"), r["label"])
                       for r in raw_switch["keep"]))
    return kwargs


@pytest.mark.parametrize("op_name,case_path", cases())
def test_operation_case(op_name: str, case_path: Path) -> None:
    case = load_case(case_path)
    op = OPERATIONS[op_name]
    with fake_host(build_fact(case["facts"]), stage=StateStage.Execute) as (_host, noops):
        kwargs = kwargs_for(case.get("kwargs", {}))
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


def noop_partner_problems(op_dir: Path) -> list[str]:
    """What is wrong with the no-op pairing in one operation's folder ([]: nothing).

    pyinfra style: every case that changes something (non-empty ``commands``, a
    ``<refuse>`` included) names with ``noop_partner`` the case of the host already in
    the desired state: same folder, identical kwargs, no commands, a noop description."""
    loaded = {p.stem: load_case(p) for p in sorted(op_dir.glob("*.json"))}
    problems = []
    for name, case in loaded.items():
        if not case.get("commands"):
            continue  # a no-op case, or one that raises ("exception")
        where = f"{op_dir.name}/{name}"
        partner_name = case.get("noop_partner")
        if partner_name is None:
            problems.append(f"{where}: change case without 'noop_partner'")
            continue
        partner = loaded.get(partner_name)
        if partner is None:
            problems.append(f"{where}: noop_partner {partner_name!r} is not a case in {op_dir.name}")
            continue
        if partner.get("kwargs") != case.get("kwargs"):
            problems.append(f"{where}: noop_partner {partner_name!r} has other kwargs")
        if partner.get("commands") != []:
            problems.append(f"{where}: noop_partner {partner_name!r} has commands")
        if not partner.get("noop_description"):
            problems.append(f"{where}: noop_partner {partner_name!r} has no noop_description")
    for name, case in loaded.items():
        if "noop_partner" in case and not case.get("commands"):
            problems.append(f"{op_dir.name}/{name}: 'noop_partner' on a case without commands")
    return problems


def operation_dirs() -> list:
    return [pytest.param(d, id=d.name) for d in sorted((TESTS / "operations").iterdir())]


@pytest.mark.parametrize("op_dir", operation_dirs())
def test_every_change_case_has_a_noop_partner(op_dir: Path) -> None:
    """Each change case is paired with the converged one (see ``noop_partner_problems``)."""
    loaded = [load_case(p) for p in op_dir.glob("*.json")]
    assert any(c.get("commands") for c in loaded), f"{op_dir.name} has no change case"
    assert noop_partner_problems(op_dir) == []


def test_noop_partner_check_catches_each_defect(tmp_path: Path) -> None:
    """The meta-test fails when any one change case loses its partner, names a missing
    one, or names one with other kwargs, commands or no noop description."""
    source = TESTS / "operations" / "ufw.rules_and_policies"
    change = "hand_made_kept"

    def folder_with(edit) -> Path:
        target = tmp_path / f"case{len(list(tmp_path.iterdir()))}" / source.name
        target.mkdir(parents=True)
        cases = {p.stem: load_case(p) for p in source.glob("*.json")}
        edit(cases)
        for stem, case in cases.items():
            (target / f"{stem}.json").write_text(json.dumps(case))
        return target

    assert noop_partner_problems(folder_with(lambda c: None)) == []
    partner = load_case(source / f"{change}.json")["noop_partner"]
    defects = {
        "without 'noop_partner'": lambda c: c[change].pop("noop_partner"),
        "is not a case": lambda c: c.pop(partner),
        "other kwargs": lambda c: c[partner]["kwargs"].update(purge_unmanaged=True),
        # (the partner then also counts as a change case without a partner)
        "has commands": lambda c: c[partner].update(commands=["true"]),
        "no noop_description": lambda c: c[partner].pop("noop_description"),
        "on a case without commands": lambda c: c["converged_noop"].update(noop_partner=partner),
    }
    for expected, edit in defects.items():
        problems = noop_partner_problems(folder_with(edit))
        assert any(expected in p for p in problems), (expected, problems)
