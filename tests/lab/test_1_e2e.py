"""End-to-end on the lab fleet: real SSH sessions through pyinfra, real UFW filtering
real traffic, real proftpd. The tests run in order and build on each other's state,
like an operator's week: first rollout, reruns, drift, role changes, mistakes.

Lab fleet (tests/lab/conftest.py): lab-h1, lab-h2 web+ftp; lab-h3 mail (+pop3);
lab-h4 dns; lab-h5 db (MySQL from the web servers only).
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import results
from labtools import (
    EXPECTED,
    FRAGMENT,
    FTP_OP,
    PASSIVE,
    assert_no_change,
    connect,
    cut_by_a_restart,
    ftp_transfer,
    reset_ufw,
    start_listener,
    stop_listener,
    ufw_view,
)


def test_01_ftp_passive_stalls_with_only_21_open(lab) -> None:
    """The failure froxlor's page warns about: UFW on, 21 open, no passive range."""
    web = lab.by_kind("web")[1]
    reset_ufw(lab, web)  # a fresh server: no passive range anywhere yet
    lab.sh(web, f"rm -f {FRAGMENT}; /etc/init.d/proftpd restart >/dev/null")
    lab.sh(web, "ufw allow 22/tcp && ufw allow 21/tcp && ufw --force enable")
    with pytest.raises(TimeoutError):  # the data connection never completes
        ftp_transfer(lab.ip(web), timeout=3)
    assert connect(lab.ip(web), 21) == "connected"  # the control connection itself works


def test_02_first_rollout_matches_roles_exactly(lab) -> None:
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    for name, host in lab.hosts.items():
        assert sorted(lab.show_added(name)) == sorted(EXPECTED[host["kind"]]), name
        status = lab.sh(name, "ufw status verbose").stdout
        assert "Status: active" in status
        assert "Default: deny (incoming), allow (outgoing)" in status
        assert "Logging: on (low)" in status
        fragment = lab.sh(name, f"cat {FRAGMENT} 2>/dev/null || true").stdout
        if host["kind"] == "web":
            assert f"PassivePorts {PASSIVE[0]} {PASSIVE[1]}\n" in fragment
            assert fragment.startswith("# Managed by froxlor-fleet")
        else:
            assert fragment == ""


def test_03_second_run_changes_nothing(lab) -> None:
    before = lab.state_files()
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    assert_no_change(res)
    assert lab.state_files() == before  # byte-identical rule files, configs, fragments


def test_04_ftp_passive_transfer_works_inside_the_range(lab) -> None:
    for web in lab.by_kind("web"):
        port, data = ftp_transfer(lab.ip(web), timeout=10)
        assert PASSIVE[0] <= port <= PASSIVE[1]
        assert data.startswith(f"hello from {web}".encode())




PIDFILE = "/run/lab-listener.pid"


@pytest.fixture
def listeners(lab):
    """Something listening on every froxlor port on every host (sshd/proftpd are real)."""
    ports = ["80", "443", "25", "465", "587", "143", "993", "110", "995", "53", "3306"]
    procs = {name: start_listener(lab, name, ports, PIDFILE) for name in lab.hosts}
    yield
    for name, proc in procs.items():
        stop_listener(lab, name, proc, PIDFILE)


def test_05_ports_admitted_exactly_where_roles_say(lab, listeners) -> None:
    role_ports = {"web": {21, 22, 80, 443}, "mail": {22, 25, 465, 587, 143, 993, 110, 995},
                  "dns": {22, 53}, "db": {22}}
    probe = [21, 22, 80, 443, 25, 465, 587, 143, 993, 110, 995, 53, 3306]
    for name, host in lab.hosts.items():
        for port in probe:
            got = connect(lab.ip(name), port, timeout=1.0)
            want = "connected" if port in role_ports[host["kind"]] else "timeout"
            if port == 21 and host["kind"] != "web":
                want = "timeout"  # proftpd listens everywhere, but only ftp hosts admit it
            assert got == want, (name, port)
    db = lab.by_kind("db")[0]
    web = lab.by_kind("web")[0]
    # 3306: not from the control side, but from a web server in mysql_allowed_sources
    assert connect(lab.ip(db), 3306, timeout=1.0) == "timeout"
    probe = f"import socket; socket.create_connection(('{lab.ip(db)}', 3306), timeout=2); print('ok')"
    probe_from_web = lab.sh(web, f"python3 -c \"{probe}\"", check=False)
    assert probe_from_web.stdout.strip() == "ok", probe_from_web.stderr


def test_06_dry_diff_reports_drift_and_changes_nothing(lab) -> None:
    mail = lab.by_kind("mail")[0]
    web = lab.by_kind("web")[0]
    lab.sh(mail, "ufw delete allow 25,465,587/tcp && ufw allow 8080/tcp")
    lab.sh(web, f"echo 'PassivePorts 1024 1025' >> {FRAGMENT}")
    lab.sh(lab.by_kind("dns")[0], "ufw --force disable")
    before = lab.state_files()
    res = lab.deploy("--dry", "--diff")
    assert res.returncode == 0, res.out
    out = res.out
    assert f"[{mail}] Will change UFW" in out
    assert "+ allow 25,465,587/tcp  (smtp)" in out
    assert f"[{mail}] keeps unmanaged UFW rule: allow 8080/tcp" in out
    assert f"[{web}] Will modify {FRAGMENT}" in out
    assert "- PassivePorts 1024 1025" in out
    assert "~ ufw: inactive -> active" in out
    assert lab.state_files() == before  # --dry touched nothing
    assert "Status: inactive" in lab.sh(lab.by_kind("dns")[0], "ufw status").stdout
    # the next run repairs all of it, keeping the hand-made rule
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    assert sorted(lab.show_added(mail)) == sorted(EXPECTED["mail"] + ["ufw allow 8080/tcp"])
    assert "PassivePorts 1024 1025" not in lab.sh(web, f"cat {FRAGMENT}").stdout
    assert "Status: active" in lab.sh(lab.by_kind("dns")[0], "ufw status").stdout
    assert_no_change(lab.deploy("-y"))


def test_07_role_removed_closes_ports_and_purge_removes_hand_rules(lab) -> None:
    ftp_data = lab.group_data("ftp_servers")
    all_data = lab.group_data("all")
    mail = lab.by_kind("mail")[0]
    try:
        lab.write_group_data("ftp_servers", "froxlor_roles = []\nftp_passive_ports = (50000, 50100)\n")
        res = lab.deploy("-y")
        assert res.returncode == 0, res.out
        for web in lab.by_kind("web"):
            assert lab.show_added(web) == ["ufw allow 22/tcp comment 'froxlor-fleet:ssh'",
                                           "ufw allow 80,443/tcp comment 'froxlor-fleet:web'"]
            assert lab.sh(web, f"test -e {FRAGMENT}", check=False).returncode == 1
            assert lab.sh(web, "proftpd -t", check=False).returncode == 0
            assert connect(lab.ip(web), 21, timeout=1.0) == "timeout"
        assert "ufw allow 8080/tcp" in lab.show_added(mail)  # hand-made rule survives

        lab.write_group_data("all", all_data + "firewall_purge_unmanaged = True\n")
        res = lab.deploy("-y")
        assert res.returncode == 0, res.out
        assert "ufw allow 8080/tcp" not in lab.show_added(mail)
    finally:
        lab.write_group_data("ftp_servers", ftp_data)
        lab.write_group_data("all", all_data)
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    for name, host in lab.hosts.items():
        assert sorted(lab.show_added(name)) == sorted(EXPECTED[host["kind"]])


def test_08_lockout_guard_stops_that_host_only(lab) -> None:
    dns = lab.by_kind("dns")[0]
    dns_data = lab.group_data("dns_servers")
    before = lab.state_files()
    try:
        lab.write_group_data("dns_servers", dns_data + 'ssh_allowed_sources = ["192.0.2.0/24"]\n')
        res = lab.deploy("-y")
    finally:
        lab.write_group_data("dns_servers", dns_data)
    assert res.returncode != 0
    assert f"[{dns}]" in res.out and "lockout guard" in res.out
    assert f"({lab.control_ip} -> {lab.ip(dns)}:22)" in res.out
    assert lab.state_files() == before  # nothing changed, on that host or elsewhere
    assert connect(lab.ip(dns), 22) == "connected"
    assert "ufw allow 22/tcp comment 'froxlor-fleet:ssh'" in lab.show_added(dns)
    assert lab.deploy("-y").returncode == 0


def test_08b_lockout_guard_never_enables_without_ssh(lab) -> None:
    """UFW off, data that would enable it without admitting us: refuse, stay off."""
    dns = lab.by_kind("dns")[0]
    dns_data = lab.group_data("dns_servers")
    lab.sh(dns, "ufw --force disable >/dev/null")
    try:
        lab.write_group_data("dns_servers", dns_data + 'ssh_allowed_sources = ["2001:db8::/32"]\n')
        res = lab.deploy("-y", "--limit", dns)
    finally:
        lab.write_group_data("dns_servers", dns_data)
    assert res.returncode != 0 and "lockout guard" in res.out, res.out
    assert "Status: inactive" in lab.sh(dns, "ufw status").stdout
    assert connect(lab.ip(dns), 22) == "connected"
    assert lab.deploy("-y").returncode == 0
    assert "Status: active" in lab.sh(dns, "ufw status").stdout


def test_09_bad_group_data_stops_before_connecting(lab) -> None:
    web_data = lab.group_data("web_servers")
    before = lab.state_files()
    try:
        lab.write_group_data("web_servers", 'froxlor_roles = ["web", "htpp"]\n')
        res = lab.deploy("-y")
    finally:
        lab.write_group_data("web_servers", web_data)
    assert res.returncode != 0
    assert "Connecting to hosts" not in res.out and "Traceback" not in res.out
    webs = lab.by_kind("web")
    assert 2 <= len(webs) <= 3  # the lab's web hosts: all named on the line
    # the same problem of every web host: one line naming them (issue 21)
    assert (f"hosts {', '.join(webs)} (group web_servers): froxlor_roles = 'htpp': "
            "unknown role") in res.out, res.out
    assert lab.state_files() == before


def test_06b_limit_touches_only_that_group(lab) -> None:
    mail = lab.by_kind("mail")[0]
    lab.sh(mail, "ufw delete allow 143,993/tcp >/dev/null")
    res = lab.deploy("-y", "--limit", "web_servers")
    assert res.returncode == 0, res.out
    assert f"[{mail}]" not in res.out
    assert "ufw allow 143,993/tcp comment 'froxlor-fleet:imap'" not in lab.show_added(mail)
    assert lab.deploy("-y", "--limit", mail).returncode == 0
    assert "ufw allow 143,993/tcp comment 'froxlor-fleet:imap'" in lab.show_added(mail)


def test_12_fragment_proftpd_refuses_stops_that_host_before_its_firewall(lab) -> None:
    """Another file in conf.d breaks `proftpd -t`: the new fragment is tried before any
    firewall change, so that host fails with ProFTPd's message and keeps the old range
    on BOTH sides (UFW and ProFTPd); the other ftp host switches both."""
    bad, good = lab.by_kind("web")
    before = lab.sh(bad, f"cat {FRAGMENT}").stdout
    ufw_before = lab.show_added(bad)
    ftp_data = lab.group_data("ftp_servers")
    lab.sh(bad, "echo 'ThisIsNotADirective on' > /etc/proftpd/conf.d/zz-broken.conf")
    try:
        lab.write_group_data("ftp_servers", ftp_data.replace("(50000, 50100)", "(50000, 50200)"))
        res = lab.deploy("-y")
        assert res.returncode != 0
        assert (f"[{bad}] proftpd -t rejects the new passive-port fragment; nothing was "
                "changed on this host") in res.out
        assert "ThisIsNotADirective" in res.out  # ProFTPd's own message
        assert lab.sh(bad, f"cat {FRAGMENT}").stdout == before
        assert lab.show_added(bad) == ufw_before  # UFW still admits the old range only
        port, _ = ftp_transfer(lab.ip(bad), timeout=10)  # still serving, old range
        assert PASSIVE[0] <= port <= PASSIVE[1]
        assert "PassivePorts 50000 50200" in lab.sh(good, f"cat {FRAGMENT}").stdout
        ranges = [r for r in lab.show_added(good) if "50000:" in r]
        assert ranges == ["ufw allow 50000:50200/tcp comment 'froxlor-fleet:ftp'"]
    finally:
        lab.write_group_data("ftp_servers", ftp_data)
        lab.sh(bad, "rm -f /etc/proftpd/conf.d/zz-broken.conf")
    assert lab.deploy("-y").returncode == 0
    assert_no_change(lab.deploy("-y"))


FAKE_SYSTEMCTL = """#!/bin/sh
# lab stand-in for systemd's systemctl: records calls, restarts proftpd like systemd would
echo "$*" >> /run/systemctl.calls
case "$*" in
  "is-active --quiet proftpd") kill -0 "$(cat /run/proftpd.pid)" ;;
  "restart proftpd")  # as systemd does it: stop the main process, start a new one
    pid=$(cat /run/proftpd.pid); kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    /usr/sbin/proftpd ;;
  *) exit 1 ;;
esac
"""


def test_13_restart_through_systemd_when_it_runs(lab) -> None:
    """On a systemd host (/run/systemd/system exists) ProFTPd is restarted with
    `systemctl restart proftpd`; the lab fakes systemctl in that host's mount namespace."""
    from conftest import TEST_LAB

    web = lab.by_kind("web")[0]
    fake = TEST_LAB / "fake-systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    lab.sh(web, f"mkdir -p /run/systemd/system && mount --bind {fake} /usr/bin/systemctl")
    ftp_data = lab.group_data("ftp_servers")
    try:
        lab.write_group_data("ftp_servers", ftp_data.replace("(50000, 50100)", "(50010, 50090)"))
        res = lab.deploy("-y", "--limit", web)
        assert res.returncode == 0, res.out
        calls = lab.sh(web, "cat /run/systemctl.calls").stdout.splitlines()
        # (the state read may ask about nftables.service: another unit, another concern)
        assert [c for c in calls if "proftpd" in c] == [
            "is-active --quiet proftpd", "restart proftpd", "is-active --quiet proftpd"], calls
        port, _ = ftp_transfer(lab.ip(web), timeout=10)
        assert 50010 <= port <= 50090
    finally:
        lab.write_group_data("ftp_servers", ftp_data)
        lab.sh(web, "umount /usr/bin/systemctl; rm -rf /run/systemd /run/systemctl.calls")
    assert lab.deploy("-y").returncode == 0


def test_14_range_change_never_stalls_a_transfer(lab) -> None:
    """While the passive range moves to a disjoint one, customers keep transferring
    (FTPS, in a loop, during the whole deploy): no transfer ever stalls (a stall: the
    data connection to a port ProFTPd offers but UFW drops times out), because the old
    range stays open until ProFTPd has switched. The only failures allowed are the
    refused/reset connections of the one ProFTPd restart (froxlor restarts it too), in one
    unbroken run of attempts; afterwards only the new range is open."""
    web = lab.by_kind("web")[0]
    ftp_data = lab.group_data("ftp_servers")
    outcomes: list[tuple[str, int]] = []  # (ok / bad data / cut … / other …, data port)
    done = threading.Event()

    def customer() -> None:
        while not done.is_set():
            try:
                port, data = ftp_transfer(lab.ip(web), timeout=4)
                outcomes.append(("ok" if data.startswith(b"hello from") else "bad data", port))
            except Exception as e:
                kind = "cut" if cut_by_a_restart(e) else "other"
                outcomes.append((f"{kind} {type(e).__name__}: {e}", 0))

    thread = threading.Thread(target=customer, daemon=True)
    try:
        lab.write_group_data("ftp_servers", ftp_data.replace("(50000, 50100)", "(50200, 50300)"))
        thread.start()
        time.sleep(1)
        res = lab.deploy("-y", "--limit", web)
        time.sleep(1)
        done.set()
        thread.join(10)
        assert res.returncode == 0, res.out
        failed_at = [i for i, (outcome, _) in enumerate(outcomes) if outcome != "ok"]
        # A stall (a timeout) or bad data is a failure; a session cut by the restart
        # (refused, reset, EOF in login or transfer) is what froxlor's restart does too.
        assert all(outcomes[i][0].startswith("cut ") for i in failed_at), outcomes
        # One outage, not several: the failures are one unbroken run of the customer's
        # (sequential) attempts, the single restart; no clock involved.
        if failed_at:
            assert failed_at == list(range(failed_at[0], failed_at[-1] + 1)), outcomes
        ports = [port for outcome, port in outcomes if outcome == "ok"]
        assert any(50000 <= p <= 50100 for p in ports) and 50200 <= ports[-1] <= 50300, ports
        ranges = [r for r in lab.show_added(web) if "/tcp" in r and ":" in r.split()[2]]
        assert ranges == ["ufw allow 50200:50300/tcp comment 'froxlor-fleet:ftp'"]
    finally:
        done.set()
        lab.write_group_data("ftp_servers", ftp_data)
    assert lab.deploy("-y", "--limit", web).returncode == 0


FAILING_RELOAD = """#!/bin/sh
# lab stand-in for systemctl on a host where `systemctl restart proftpd` fails
echo "$*" >> /run/systemctl.calls
case "$*" in
  "is-active --quiet proftpd") kill -0 "$(cat /run/proftpd.pid)" ;;
  "restart proftpd") echo "Job for proftpd.service failed." >&2; exit 1 ;;
  *) exit 1 ;;
esac
"""


def test_15_failed_restart_leaves_ufw_and_proftpd_on_the_old_range(lab) -> None:
    """`proftpd -t` passes but the restart fails: the fragment is put back, UFW closes the
    new range again (both sides on the old one, FTPS keeps working), the host fails
    with one line; once the restart works the next run finishes the change."""
    from conftest import TEST_LAB

    web = lab.by_kind("web")[0]
    fake = TEST_LAB / "failing-systemctl"
    fake.write_text(FAILING_RELOAD)
    fake.chmod(0o755)
    before = lab.sh(web, f"cat {FRAGMENT}").stdout
    ufw_before = lab.show_added(web)
    ftp_data = lab.group_data("ftp_servers")
    lab.sh(web, f"mkdir -p /run/systemd/system && mount --bind {fake} /usr/bin/systemctl")
    try:
        lab.write_group_data("ftp_servers", ftp_data.replace("(50000, 50100)", "(50200, 50300)"))
        res = lab.deploy("-y", "--limit", web)
        assert res.returncode != 0
        assert f"[{web}] ProFTPd did not restart with the new fragment, previous fragment restored" in res.out
        assert "UFW is back on the previous passive range" in res.out
        assert "Traceback" not in res.out
        assert lab.sh(web, f"cat {FRAGMENT}").stdout == before
        assert lab.show_added(web) == ufw_before
        port, _ = ftp_transfer(lab.ip(web), timeout=10)
        assert PASSIVE[0] <= port <= PASSIVE[1]
    finally:
        lab.sh(web, "umount /usr/bin/systemctl; rm -rf /run/systemd /run/systemctl.calls")
    try:  # the restart works again: the next run makes the change
        res = lab.deploy("-y", "--limit", web)
        assert res.returncode == 0, res.out
        port, _ = ftp_transfer(lab.ip(web), timeout=10)
        assert 50200 <= port <= 50300
    finally:
        lab.write_group_data("ftp_servers", ftp_data)
    assert lab.deploy("-y", "--limit", web).returncode == 0


def test_16_a_fragment_proftpd_never_loaded_is_applied(lab) -> None:
    """The fragment on disk is right but ProFTPd never loaded it (a run cut short, a
    restart that failed): the marker says so, --dry --diff announces a restart, the
    next run restarts it (the file itself stays byte for byte), and then a no-op."""
    web = lab.by_kind("web")[0]
    assert_no_change(lab.deploy("-y"))
    fragment = lab.sh(web, f"cat {FRAGMENT}").stdout
    lab.sh(web, "rm /var/lib/froxlor-fleet/proftpd-fragment.loaded")
    dry = lab.deploy("--dry", "--diff")
    assert f"[{web}] Will restart ProFTPd: {FRAGMENT} is not known to be loaded" in dry.out
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    _hosts, success, error, _no_change = results(res.out)[FTP_OP]
    assert (success, error) == ("1", "-"), res.out
    assert lab.sh(web, f"cat {FRAGMENT}").stdout == fragment
    assert_no_change(lab.deploy("-y"))


def test_10_one_step_apply_equals_the_ufw_cli(lab) -> None:
    """Our one remote step (ufw's frontend in one process, one reload) leaves exactly
    the state the ufw CLI leaves for the same changes: adds, a re-tagged hand rule,
    a delete, a policy and a logging change, on an active firewall."""
    cli_host, our_host = lab.by_kind("web")
    start = ("ufw allow 8080/tcp comment 'froxlor-fleet:extra old' && ufw allow 2222/tcp && "
             "ufw allow 22/tcp && ufw default reject incoming && ufw logging medium && "
             "ufw --force enable")
    for name in (cli_host, our_host):
        reset_ufw(lab, name)
        lab.sh(name, start + " >/dev/null")
    assert ufw_view(lab, cli_host) == ufw_view(lab, our_host)  # same starting point

    lab.sh(cli_host, " && ".join([
        "ufw allow proto tcp from any to any port 21 comment froxlor-fleet:ftp",
        "ufw allow proto tcp from any to any port 50000:50100 comment froxlor-fleet:ftp",
        "ufw allow proto tcp from any to any port 22 comment froxlor-fleet:ssh",
        "ufw allow proto tcp from any to any port 80,443 comment froxlor-fleet:web",
        "ufw delete allow 8080/tcp",
        "ufw default deny incoming",
        "ufw logging low",
    ]) + " >/dev/null")
    res = lab.deploy("-y", "--limit", our_host)
    assert res.returncode == 0, res.out

    cli, ours = ufw_view(lab, cli_host), ufw_view(lab, our_host)
    assert cli.keys() == ours.keys()
    for key in cli:
        assert ours[key] == cli[key], key
    assert "2222/tcp" in ours["status"] and "8080" not in ours["status"]

    for name in (cli_host, our_host):  # back to the fleet's converged state
        lab.sh(name, "ufw delete allow 2222/tcp >/dev/null")
    assert lab.deploy("-y").returncode == 0


def test_10b_enabling_from_pristine_equals_the_ufw_cli(lab) -> None:
    """First rollout on an inactive, fresh ufw with non-default logging and policy:
    our enable (ufw's boot path) leaves what `ufw ... && ufw enable` leaves."""
    cli_host, our_host = lab.by_kind("web")
    all_data = lab.group_data("all")
    for name in (cli_host, our_host):
        reset_ufw(lab, name)
    lab.sh(cli_host, " && ".join([
        "ufw allow proto tcp from any to any port 21 comment froxlor-fleet:ftp",
        "ufw allow proto tcp from any to any port 50000:50100 comment froxlor-fleet:ftp",
        "ufw allow proto tcp from any to any port 22 comment froxlor-fleet:ssh",
        "ufw allow proto tcp from any to any port 80,443 comment froxlor-fleet:web",
        "ufw default reject incoming",
        "ufw logging high",
        "ufw --force enable",
    ]) + " >/dev/null")
    try:
        lab.write_group_data("all", all_data + 'firewall_default_incoming = "reject"\n'
                                               'firewall_logging = "high"\n')
        res = lab.deploy("-y", "--limit", our_host)
        assert res.returncode == 0, res.out
        cli, ours = ufw_view(lab, cli_host), ufw_view(lab, our_host)
        for key in cli:
            assert ours[key] == cli[key], key
        assert "Logging: on (high)" in ours["status"]
    finally:
        lab.write_group_data("all", all_data)
    assert lab.deploy("-y").returncode == 0
