"""Runs last: the whole lab suite left this machine's own firewall and /etc/ufw alone."""

from conftest import machine_snapshot


def test_control_machine_untouched(lab) -> None:
    """iptables-save / ip6tables-save of the root namespace and /etc/ufw byte-identical."""
    assert machine_snapshot() == lab.machine_before
