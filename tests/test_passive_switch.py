"""The UFW half of a passive-range change (passive_switch.plan_switch): the old range
stays open until ProFTPd has switched (``Switch.keep``, which the host program keeps
open only until then: test_transaction.py)."""

from __future__ import annotations

from froxlor_fleet.facts import HostState, parse_state
from froxlor_fleet.model.catalog import FRAGMENT_PATH
from froxlor_fleet.model.validation import check_inventory
from froxlor_fleet.operations.ftpplan import render_fragment
from froxlor_fleet.operations.passive_switch import plan_switch, range_rule
from helpers import build_fact, make_inventory

CONVERGED_RANGE = (49152, 65534)  # the converged-web-ftp scenario's UFW rule


def plan_for(**data):
    groups = {"web_servers": (["web1"], {"froxlor_roles": ["web", "ftp"], **data})}
    return check_inventory(make_inventory(groups))["web1"]


def host_with(proftpd_range: tuple[int, int] | None, scenario: str = "converged-web-ftp",
              **extra) -> HostState:
    """A web+ftp host whose ProFTPd uses ``proftpd_range`` (our fragment), UFW as captured."""
    fragment = render_fragment(proftpd_range) if proftpd_range else None
    files = {FRAGMENT_PATH.lstrip("/"): fragment} if fragment else {}
    return parse_state(build_fact({"scenario": scenario, "ftp_tree": "froxlor-bookworm",
                                   "ftp_files": files, "fragment": fragment, **extra}))


def test_a_range_change_keeps_the_old_range_open_until_proftpd_switched() -> None:
    plan = plan_for(ftp_passive_ports=(50000, 50100))
    switch = plan_switch(plan, host_with(CONVERGED_RANGE), config_changes=True)
    assert switch is not None
    assert (switch.old, switch.new) == (CONVERGED_RANGE, (50000, 50100))
    assert switch.keep == (range_rule(CONVERGED_RANGE),)
    assert [w["dport"] for w in switch.keep_wire()] == ["49152:65534"]
    assert "49152:65534" not in [r.ports[0] for r in plan.rules]  # not wanted after it


def test_an_old_range_ufw_does_not_hold_is_not_kept() -> None:
    """Nothing opened that no role asks for: a range ProFTPd used but UFW never opened
    (by this deploy) is not opened now."""
    switch = plan_switch(plan_for(ftp_passive_ports=(50000, 50100)), host_with((40000, 40100)),
                         config_changes=True)
    assert switch is not None and switch.keep == () and switch.keep_wire() == []


def test_no_switch_without_a_range_change() -> None:
    plan = plan_for(ftp_passive_ports=CONVERGED_RANGE, ftp_masquerade_address="192.0.2.7")
    # the fragment changes (MasqueradeAddress), the range ProFTPd uses does not
    assert plan_switch(plan, host_with(CONVERGED_RANGE), config_changes=True) is None
    assert plan_switch(plan_for(ftp_passive_ports=(50000, 50100)), host_with(CONVERGED_RANGE),
                       config_changes=False) is None


def test_no_switch_for_a_host_without_the_ftp_role() -> None:
    groups = {"web_servers": (["web1"], {"froxlor_roles": ["web"]})}
    plan = check_inventory(make_inventory(groups))["web1"]
    assert plan_switch(plan, host_with(CONVERGED_RANGE), config_changes=True) is None


def test_first_fragment_on_a_host_without_a_range() -> None:
    """No range in ProFTPd yet: nothing to keep open."""
    switch = plan_switch(plan_for(ftp_passive_ports=(50000, 50100)), host_with(None, "pristine"),
                         config_changes=True)
    assert switch is not None and switch.old is None and switch.keep == ()
