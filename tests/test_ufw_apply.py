"""The host-side UFW step (``remote/ufw_apply.py``) run whole: ``run(request)`` through
ufw's own frontend on rule files in a temporary folder (never /etc/ufw, never this
machine's firewall: ufw's iptables calls go to a stub that only answers ``-V``).

The host plans again under its lock; what it then applies must pass the same lockout
guard and the same commit-confirm decision as the control side's plan (issue 22): a
plan that became risky while the run waited is refused, never applied unguarded or
unarmed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from froxlor_fleet.remote.ufwmodel import Session, Want, parse_rules
from helpers import UFW_FIXTURES, ufw_sandbox

SSH = Want("22", "tcp", None, "froxlor-fleet:ssh")
WEB = Want("80,443", "tcp", None, "froxlor-fleet:web")
SESSION = Session("10.77.0.1", "10.77.0.11", 22, "eth0")


class Host:
    """UFW's files in a folder, and ``ufw_apply.run`` on them."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.etc = ufw_sandbox(root, monkeypatch)
        (self.etc / "default" / "ufw").write_text(
            (UFW_FIXTURES / "converged-web-ftp" / "default-ufw").read_text())
        (self.etc / "ufw" / "ufw.conf").write_text("ENABLED=no\nLOGLEVEL=low\n")
        self.rules([SSH])

    def rules(self, wants: list[Want]) -> None:
        from froxlor_fleet.remote.ufwmodel import expand

        for name, family in (("user.rules", 4), ("user6.rules", 6)):
            (self.etc / "ufw" / name).write_text("".join(
                f"### tuple ### {r.tuple_text()}\n" for w in wants for r in expand(w, True)
                if r.family == family))

    def files(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted((self.etc / "ufw").glob("*.rules"))}

    def written(self):
        return parse_rules(*((self.etc / "ufw" / name).read_text().splitlines()
                             for name in ("user.rules", "user6.rules")))

    def run(self, **request) -> tuple[int, str]:
        """``ufw_apply.run`` as ``main`` calls it: (exit status, one line or messages)."""
        import ufw.frontend

        from froxlor_fleet.remote import ufw_apply

        def make_ui():
            ui = ufw.frontend.UFWFrontend(False, rootdir=str(self.root), datadir=str(self.root))
            ui.backend.caps = {"limit": {"4": True, "6": True}}
            return ui

        full = {"wanted": [w.to_wire() for w in (SSH, WEB)], "purge": False,
                "incoming": "deny", "outgoing": "allow", "logging": "low", "enabled": False,
                "guard": True, "session": SESSION.to_wire(), "over_ssh": True, "ssh_port": 22,
                "confirm": True, "armed": True, **request}
        try:
            out = ufw_apply.run(full, make_ui=make_ui, lockfile=str(self.root / "ufw.lock"))
        except ufw_apply.StepError as e:
            return ufw_apply.exit_status(e), str(e)
        return 0, "\n".join(out)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    return Host(tmp_path, monkeypatch)


def test_a_plain_change_is_applied(host: Host) -> None:
    code, out = host.run()
    assert code == 0, out
    assert {r.dport for r in host.written()} == {"22", "80,443"}


def test_unknown_session_still_guards_on_the_host(host: Host) -> None:
    """The session could not be found (sudo/su/jump host): the host refuses what could
    cut SSH, as the control side does, instead of skipping its guard."""
    before = host.files()
    code, out = host.run(session=None, enabled=True)  # enabling UFW: could cut SSH
    assert code == 3 and "lockout guard" in out and "could not find the SSH session" in out
    assert host.files() == before


def test_unknown_session_allows_what_cannot_cut_ssh(host: Host) -> None:
    code, out = host.run(session=None, wanted=[WEB.to_wire()])  # UFW stays off
    assert code == 0, out


def test_known_session_refused_when_the_result_would_not_admit_it(host: Host) -> None:
    before = host.files()
    code, out = host.run(wanted=[WEB.to_wire()], enabled=True)
    assert code == 3 and "would not admit this SSH session" in out
    assert host.files() == before


def test_a_change_the_control_side_did_not_arm_is_refused_when_it_reaches_ssh(
        host: Host) -> None:
    """The control side saw no rule change (so it did not arm commit-confirm), but while
    it waited for the lock the host changed: what the host would now apply could affect
    SSH and would not be confirmed. Refused, nothing changed."""
    before = host.files()
    code, out = host.run(armed=False, expect={"add": [], "delete": []})
    assert code == 1 and "not armed" in out and "run again" in out
    assert host.files() == before


def test_an_unarmed_change_is_fine_when_confirm_is_off(host: Host) -> None:
    code, out = host.run(armed=False, confirm=False, expect={"add": [], "delete": []})
    assert code == 0, out
