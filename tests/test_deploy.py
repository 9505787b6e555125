"""The packaged deploy (``deploys.froxlor_firewall``) on one host, its operations
recorded: the FTP side (daemon or refusal, the host program's FTP part, the range
switch) is decided once per host and run (``ftpplan.plan_ftp``) and every operation
gets that one decision; the operations then use it instead of deciding again.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from pyinfra.api import FunctionCommand
from pyinfra.api.state import StateStage

from froxlor_fleet import deploys
from froxlor_fleet.model.catalog import FRAGMENT_PATH
from froxlor_fleet.operations import ftp, ftpplan, ufw
from froxlor_fleet.operations.ftpplan import FtpPlan
from helpers import build_fact, fake_host
from test_passive_switch import CONVERGED_RANGE, plan_for

OPERATIONS = {"ready_for_ftp": (ftp, ftp.ready_for_ftp),
              "rules_and_policies": (ufw, ufw.rules_and_policies),
              "passive_ports_fragment": (ftp, ftp.passive_ports_fragment),
              "passive_port_range": (ftp, ftp.passive_port_range)}
# Each daemon's part of the host program's request (what ``ftpplan`` decides per daemon).
PART = {"proftpd": "fragment_part", "pureftpd": "pureftpd_part"}
PUREFTPD = ["@bin pure-ftpd-mysql /usr/sbin/pure-ftpd-mysql",
            "@bin pure-ftpd-wrapper /usr/sbin/pure-ftpd-wrapper"]


def proftpd_facts(ports: tuple[int, int]) -> dict[str, Any]:
    """A converged web+ftp host whose ProFTPd runs on our fragment for ``ports``."""
    fragment = ftpplan.render_fragment(ports)
    return {"scenario": "converged-web-ftp", "ftp_tree": "froxlor-bookworm",
            "ftp_files": {FRAGMENT_PATH.lstrip("/"): fragment}, "fragment": fragment,
            "ftp_running": {"proftpd": 812}}


def pureftpd_facts(ports: tuple[int, int]) -> dict[str, Any]:
    """A converged web+ftp host (UFW) with pure-ftpd on ``ports``, no ProFTPd."""
    return {"scenario": "converged-web-ftp", "proftpd": [], "ftp_running": {"pureftpd": 733},
            "ftp_lines": [*PUREFTPD, f"@pure PassivePortRange {ports[0]} {ports[1]}"]}


class Run:
    """One deploy on one fake host: what each operation was called with, and how often
    the FTP side was decided (``choose_daemon``, a daemon's part: ``PART``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, facts: dict[str, Any], **data: Any):
        self.calls: dict[str, list[dict[str, Any]]] = {}
        self.decided: Counter[str] = Counter()
        self.facts = build_fact(facts)
        for name, (module, _) in OPERATIONS.items():
            monkeypatch.setattr(module, name, lambda _name=name, **kw: self.calls.setdefault(
                _name, []).append(kw))
        # ftpplan decides; ftp's operations hold the same functions for when they run on
        # their own: a decision is counted wherever it is made.
        for module, name in ((ftpplan, "choose_daemon"), (ftp, "choose_daemon"),
                             (ftpplan, PART["proftpd"]), (ftp, PART["proftpd"]),
                             (ftpplan, PART["pureftpd"]), (ftp, PART["pureftpd"])):
            monkeypatch.setattr(module, name, self.counted(name, getattr(module, name)))
        with fake_host(self.facts) as (host, _):
            setattr(host.state, "_froxlor_fleet_plans", {host.name: plan_for(**data)})  # noqa: B010
            deploys.froxlor_firewall._inner()

    def counted(self, key: str, func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.decided[key] += 1
            return func(*args, **kwargs)
        return wrapper

    def once(self, name: str) -> dict[str, Any]:
        (kwargs,) = self.calls[name]
        return kwargs

    def real(self, name: str) -> tuple[list[str], list[dict[str, Any]]]:
        """The real operation with the kwargs the deploy gave it, run on the same host:
        its noop lines and the requests of the transactions it would run."""
        with fake_host(self.facts, stage=StateStage.Execute) as (_host, noops):
            kwargs = {k: v for k, v in self.once(name).items() if k != "name"}
            commands = list(OPERATIONS[name][1]._inner(**kwargs))
        return noops, [json.loads(c.args[0]) for c in commands
                       if isinstance(c, FunctionCommand) and c.function.__name__ == "_transaction"]


@pytest.mark.parametrize("daemon,facts,operation,other", [
    ("proftpd", proftpd_facts, "passive_ports_fragment", "passive_port_range"),
    ("pureftpd", pureftpd_facts, "passive_port_range", "passive_ports_fragment")])
def test_a_range_switch_is_decided_once_and_handed_to_every_operation(
        monkeypatch, daemon: str, facts: Any, operation: str, other: str) -> None:
    run = Run(monkeypatch, facts(CONVERGED_RANGE), ftp_passive_ports=(50000, 50100))
    assert run.decided == {"choose_daemon": 1, PART[daemon]: 1}
    ftp_plan = run.once(operation)["ftp"]
    assert isinstance(ftp_plan, FtpPlan) and (ftp_plan.daemon, ftp_plan.refusal) == (daemon, None)
    assert "ready_for_ftp" not in run.calls  # one operation less per host: UFW's refuses
    ufw_call = run.once("rules_and_policies")
    assert ufw_call["refusal"] is None
    assert ufw_call["ftp"] is ftp_plan.part and ftp_plan.part is not None
    assert [w["dport"] for w in ftp_plan.part["keep"]] == ["49152:65534"]
    assert ftp_plan.keep and set(ftp_plan.keep) <= set(ufw_call["rules"])  # open until the daemon switched
    kwargs = run.once(operation)
    assert kwargs["ftp"] is ftp_plan and kwargs["switch"] is ftp_plan.switch
    if daemon == "proftpd":
        assert kwargs["content"] is ftp_plan.fragment and "PassivePorts 50000 50100" in ftp_plan.fragment
    else:
        assert kwargs["passive_ports"] == (50000, 50100) and ftp_plan.part["range"] == "50000 50100"
    assert other not in run.calls

    # The operation sends the deploy's part as it is: nothing decided again.
    noops, requests = run.real(operation)
    assert noops == [] and [r["ftp"] for r in requests] == [ftp_plan.part]
    assert sum(run.decided.values()) == 2


def test_a_host_no_daemon_can_serve_is_refused_from_the_one_decision(monkeypatch) -> None:
    facts = proftpd_facts(CONVERGED_RANGE)
    facts["ftp_lines"] = PUREFTPD  # ProFTPd and pure-ftpd both installed, ftp_daemon auto
    run = Run(monkeypatch, facts, ftp_passive_ports=(50000, 50100))
    refusal = run.once("rules_and_policies")["refusal"]
    assert refusal.startswith("both ProFTPd (")
    assert run.decided["choose_daemon"] == 1
    # The UFW operation fails the host before anything changes; no FTP operation runs.
    assert set(run.calls) == {"rules_and_policies"}
    with fake_host(run.facts, stage=StateStage.Execute):
        kwargs = {k: v for k, v in run.once("rules_and_policies").items() if k != "name"}
        (command,) = OPERATIONS["rules_and_policies"][1]._inner(**kwargs)
    assert isinstance(command, FunctionCommand) and command.args == (refusal,)
    # ready_for_ftp, for deploys of one's own, says the same from the same functions
    with fake_host(run.facts, stage=StateStage.Execute):
        (alone,) = OPERATIONS["ready_for_ftp"][1]._inner(passive_ports=(50000, 50100))
    assert alone.args == (refusal,)
    assert run.decided["choose_daemon"] == 2


@pytest.mark.parametrize("data,expected", [
    ({"ftp_masquerade_address": "2001:db8::21"}, "pure-ftpd's ForcePassiveIP takes an IPv4"),
])
def test_pureftpd_given_an_ipv6_masquerade_is_refused_by_the_ufw_operation(
        monkeypatch, data: dict[str, Any], expected: str) -> None:
    run = Run(monkeypatch, pureftpd_facts(CONVERGED_RANGE), ftp_passive_ports=(50000, 50100), **data)
    assert run.once("rules_and_policies")["refusal"].startswith(expected)
    assert set(run.calls) == {"rules_and_policies"}


def test_nothing_to_change_is_decided_once_too(monkeypatch) -> None:
    run = Run(monkeypatch, proftpd_facts(CONVERGED_RANGE), ftp_passive_ports=CONVERGED_RANGE)
    ftp_plan = run.once("passive_ports_fragment")["ftp"]
    assert (ftp_plan.daemon, ftp_plan.part, ftp_plan.switch) == ("proftpd", None, None)
    assert run.once("rules_and_policies")["ftp"] is None
    noops, requests = run.real("passive_ports_fragment")
    assert noops == [ftp.FRAGMENT_NOOP_MESSAGE] and requests == []
    assert sum(run.decided.values()) == 2


def test_a_host_without_the_ftp_role_chooses_no_daemon(monkeypatch) -> None:
    run = Run(monkeypatch, proftpd_facts(CONVERGED_RANGE), froxlor_roles=["web"])
    ftp_plan = run.once("passive_ports_fragment")["ftp"]
    assert (ftp_plan.daemon, ftp_plan.refusal, ftp_plan.switch) == (None, None, None)
    assert "choose_daemon" not in run.decided
    # ProFTPd's leftover fragment goes (its operation, ProFTPd's part)
    assert run.once("passive_ports_fragment")["content"] is None
    assert ftp_plan.part is not None and ftp_plan.part["daemon"] == "proftpd"
    assert run.once("rules_and_policies")["ftp"] is ftp_plan.part
