"""Safety promises on hosts that look like real fleets: a non-root login with sudo,
IPv6 sessions, IPV6=no, hand-made rules the guard must see, a session that can't be
found, one refusing host among many, a run that waited for another, and a value ufw
refuses. Each test failed before the change it proves (issue 9)."""

from __future__ import annotations

import subprocess

from conftest import TEST_LAB, results
from driver import DEPLOY
from lab.access import COMMAND_LOG, HIDE_SESSION
from lab.config import SUDO_USER as SUDO
from labtools import EXPECTED, FRAGMENT, FTP_OP, UFW_OP, assert_no_change, connect, ftp_transfer, reset_ufw
from test_2_faults import converge, deploy_while_locked, host_files


class Data:
    """Edit group data for one test; everything is put back afterwards."""

    def __init__(self, lab) -> None:
        self.lab, self.saved = lab, {}

    def __enter__(self) -> Data:
        return self

    def set(self, group: str, text: str) -> None:
        self.saved.setdefault(group, self.lab.group_data(group))
        self.lab.write_group_data(group, text)

    def add(self, group: str, text: str) -> None:
        self.set(group, self.saved.get(group, self.lab.group_data(group)) + text)

    def sudo(self) -> None:
        """Log in as the non-root lab user and become root with sudo."""
        all_data = self.saved.get("all", self.lab.group_data("all"))
        self.set("all", all_data.replace('ssh_user = "root"', f'ssh_user = "{SUDO}"\n_sudo = True'))

    def __exit__(self, *exc) -> None:
        for group, text in self.saved.items():
            self.lab.write_group_data(group, text)


def v6_inventory(lab, name: str) -> str:
    """An inventory that reaches ``name`` over IPv6 (its group memberships as usual)."""
    groups = [g for g, members in lab.info["groups"].items() if name in members]
    lines = ["from froxlor_fleet.fleetcheck import check_fleet"]
    for group in groups:
        lines.append(f'{group} = [("{name}", {{"ssh_hostname": "{lab.hosts[name]["ip6"]}"}})]')
    lines.append("check_fleet(__file__)")
    (TEST_LAB / "inventory6.py").write_text("\n".join(lines) + "\n")
    return "inventory6.py"


def commands_log(lab, name: str) -> str:
    return lab.sh(name, f"cat {COMMAND_LOG}").stdout


def sudo_login_paths(lab, name: str) -> dict[str, str]:
    """What the sudo user's login on ``name`` opens as that user (sshd reads authorized
    keys as the user; its login shell runs the forced command): path -> test(1) flag."""
    passwd = lab.sh(name, f"getent passwd {SUDO}").stdout.strip().split(":")
    sshd = {k.lower(): v for k, _, v in (line.partition(" ") for line in
            (TEST_LAB / "hosts" / name / "sshd_config").read_text().splitlines())}
    return {passwd[6]: "-x", sshd["forcecommand"]: "-x", sshd["authorizedkeysfile"]: "-r"}


def test_sudo_login_needs_nothing_under_a_private_lab_folder(lab) -> None:
    """A clone in root's home (/root is 0700 on Debian): the lab's folder is out of the
    sudo user's reach, so its login (shell, forced command, authorized keys) must not
    need anything in there (issue 21: the sudo tests failed "Authentication failed")."""
    dns = lab.by_kind("dns")[0]
    uid = lab.sh(dns, f"id -u {SUDO}").stdout.strip()
    mode = TEST_LAB.stat().st_mode & 0o7777
    TEST_LAB.chmod(0o700)  # as under a 0700 /root, wherever this clone sits
    try:
        paths = sudo_login_paths(lab, dns)
        out_of_reach = [path for path, flag in paths.items() if lab.sh(
            dns, f"setpriv --reuid={uid} --regid={uid} --clear-groups test {flag} {path}",
            check=False).returncode != 0]
        login = subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(TEST_LAB / "id_ed25519"),
             "-o", f"UserKnownHostsFile={TEST_LAB / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"{SUDO}@{lab.ip(dns)}", "sudo -n id -un"],
            capture_output=True, text=True, timeout=30)
    finally:
        TEST_LAB.chmod(mode)
    assert out_of_reach == [], f"{SUDO} (uid {uid}) cannot reach {out_of_reach} of {paths}"
    assert (login.returncode, login.stdout.strip()) == (0, "root"), login.stderr


def test_sudo_login_converges_when_sources_admit_us(lab) -> None:
    converge(lab)
    dns = lab.by_kind("dns")[0]
    reset_ufw(lab, dns)
    lab.sh(dns, f": > {COMMAND_LOG}")
    with Data(lab) as data:
        data.sudo()
        data.add("dns_servers", f'ssh_allowed_sources = ["{lab.control_ip}/32"]\n')
        res = lab.deploy("-y", "--limit", dns)
        assert res.returncode == 0, res.out
        assert f"ufw allow from {lab.control_ip} to any port 22 proto tcp comment 'froxlor-fleet:ssh'" \
            in lab.show_added(dns)
        assert "Status: active" in lab.sh(dns, "ufw status").stdout
        assert_no_change(lab.deploy("-y", "--limit", dns))
    # every command really arrived as the sudo user's, through sudo
    assert all(line.startswith("sudo ") for line in commands_log(lab, dns).splitlines()), \
        commands_log(lab, dns)
    converge(lab)


def test_sudo_login_refuses_sources_that_exclude_us(lab) -> None:
    """sudo drops $SSH_CONNECTION: the guard used to switch itself off and lock us out."""
    converge(lab)
    dns = lab.by_kind("dns")[0]
    before = lab.state_files()
    with Data(lab) as data:
        data.sudo()
        data.add("dns_servers", 'ssh_allowed_sources = ["192.0.2.0/24"]\n')
        res = lab.deploy("-y")
    assert res.returncode != 0
    assert f"({lab.control_ip} -> {lab.ip(dns)}:22)" in res.out and "lockout guard" in res.out
    assert "Traceback" not in res.out
    assert lab.state_files() == before
    assert connect(lab.ip(dns), 22) == "connected"


def test_ipv6_session_guarded_and_converges(lab) -> None:
    converge(lab)
    dns = lab.by_kind("dns")[0]
    inventory = v6_inventory(lab, dns)
    before = lab.state_files()
    with Data(lab) as data:
        # v4-only sources exclude a v6 session: refuse
        data.add("dns_servers", f'ssh_allowed_sources = ["{lab.control_ip}"]\n')
        res = lab.pyinfra(inventory, str(DEPLOY), "-y")
        assert res.returncode != 0 and "lockout guard" in res.out, res.out
        assert f"({lab.info['control_ip6']} -> {lab.hosts[dns]['ip6']}:22)" in res.out
        assert lab.state_files() == before
        # sources that include the v6 control address: converge over v6, then no change
        data.add("dns_servers", f'ssh_allowed_sources = ["{lab.control_ip}", "{lab.info["control_ip6"]}"]\n')
        res = lab.pyinfra(inventory, str(DEPLOY), "-y")
        assert res.returncode == 0, res.out
        assert f"ufw allow from {lab.info['control_ip6']} to any port 22 proto tcp " \
               "comment 'froxlor-fleet:ssh'" in lab.show_added(dns)
        assert_no_change(lab.pyinfra(inventory, str(DEPLOY), "-y"))
    converge(lab)


def set_ipv6(lab, name: str, value: str) -> None:
    """Edit IPV6= in /etc/default/ufw as an admin would (no reload). The file is a bind
    mount in the lab: rewrite it in place (sed -i renames)."""
    lab.sh(name, f"t=$(sed 's/^IPV6=.*/IPV6={value}/' /etc/default/ufw) && "
                 "printf '%s\\n' \"$t\" > /etc/default/ufw")


def test_ipv6_no_host_converges_and_second_run_changes_nothing(lab) -> None:
    """Managed v6 rules in user6.rules, then IPV6=no: ufw ignores that file (and won't
    delete from it), so a plan that deletes them would fail and repeat on every run."""
    converge(lab)
    dns = lab.by_kind("dns")[0]
    user6 = TEST_LAB / "hosts" / dns / "etc-ufw/user6.rules"
    before = user6.read_text()
    assert "### tuple ###" in before  # our v6 rules from the rollout
    try:
        set_ipv6(lab, dns, "no")
        # the v4 rules are all there, the v6 ones are inert: nothing to do, twice
        assert_no_change(lab.deploy("-y", "--limit", dns))
        assert_no_change(lab.deploy("-y", "--limit", dns))
        assert user6.read_text() == before
    finally:
        set_ipv6(lab, dns, "yes")
    converge(lab)


def test_refusal_on_one_host_others_finish_every_operation(lab) -> None:
    """With -y, one host's refusal used to abort the run (gevent tracebacks, the others'
    later operations never ran). Now it fails that host only."""
    converge(lab)
    dns = lab.by_kind("dns")[0]
    webs, mail = lab.by_kind("web"), lab.by_kind("mail")[0]
    for web in webs:  # changes for both later operations on the healthy hosts
        lab.sh(web, f"sed -i 's/50000 50100/50000 50001/' {FRAGMENT}")
        lab.sh(web, "ufw delete allow 80,443/tcp >/dev/null")
    lab.sh(mail, "ufw delete allow 143,993/tcp >/dev/null")
    with Data(lab) as data:
        data.add("dns_servers", 'ssh_allowed_sources = ["192.0.2.0/24"]\n')
        res = lab.deploy("-y")
    assert res.returncode != 0
    assert "Traceback" not in res.out
    refusals = [line for line in res.out.splitlines() if "lockout guard" in line]
    assert len(refusals) == 1 and f"[{dns}]" in refusals[0], res.out
    rows = results(res.out)
    assert rows[UFW_OP][2] == "1", rows  # one error: the refusing host
    assert rows[FTP_OP][1] == str(len(webs)), rows  # the later operation ran on the others
    for name, host in lab.hosts.items():
        if name != dns:
            assert sorted(lab.show_added(name)) == sorted(EXPECTED[host["kind"]]), name
    for web in webs:
        assert "PassivePorts 50000 50100" in lab.sh(web, f"cat {FRAGMENT}").stdout


def test_guard_sees_hand_made_deny_on_interface_or_source_port(lab) -> None:
    """UFW off with a hand-made deny for SSH in its files, on our interface or by source
    port; enabling it would lock us out. The guard used to skip such rules."""
    converge(lab)
    dns = lab.by_kind("dns")[0]
    traps = [f"deny in on eth0 from {lab.control_ip} to any port 22 proto tcp",
             "deny proto tcp from any port 1024:65535 to any port 22"]
    for trap in traps:
        lab.sh(dns, f"ufw --force disable >/dev/null && ufw insert 1 {trap} >/dev/null")
        try:
            before = host_files(lab, [dns])
            res = lab.deploy("-y", "--limit", dns)
            assert res.returncode != 0 and "lockout guard" in res.out, (trap, res.out)
            assert "Status: inactive" in lab.sh(dns, "ufw status").stdout
            assert host_files(lab, [dns]) == before
            assert connect(lab.ip(dns), 22) == "connected"
        finally:
            lab.sh(dns, f"ufw --force disable >/dev/null; ufw delete {trap} >/dev/null", check=False)
    # an interface deny on another interface can't match: no refusal
    lab.sh(dns, "ufw insert 1 deny in on eth9 to any port 22 proto tcp >/dev/null")
    try:
        res = lab.deploy("-y", "--limit", dns)
        assert res.returncode == 0, res.out
    finally:
        lab.sh(dns, "ufw delete deny in on eth9 to any port 22 proto tcp >/dev/null")
    converge(lab)


def test_hand_made_limit_on_ssh_is_kept(lab) -> None:
    converge(lab)
    dns = lab.by_kind("dns")[0]
    lab.sh(dns, "ufw limit 22/tcp >/dev/null")
    res = lab.deploy("-y", "--limit", dns)
    assert res.returncode == 0, res.out
    added = lab.show_added(dns)
    assert "ufw limit 22/tcp comment 'froxlor-fleet:ssh'" in added, added
    assert "ufw allow 22/tcp comment 'froxlor-fleet:ssh'" not in added
    assert_no_change(lab.deploy("-y", "--limit", dns))
    lab.sh(dns, "ufw allow 22/tcp >/dev/null")  # back to allow (deleting it would lock us out)
    converge(lab)


def test_unknown_session_fails_closed(lab) -> None:
    converge(lab)
    dns = lab.by_kind("dns")[0]
    lab.sh(dns, f"touch {HIDE_SESSION}")
    try:
        # changes away from SSH on an active firewall are still fine
        lab.sh(dns, "ufw delete allow 53/udp >/dev/null")
        assert lab.deploy("-y", "--limit", dns).returncode == 0
        # enabling UFW without knowing the session: refused, stays off, reachable
        lab.sh(dns, "ufw --force disable >/dev/null")
        res = lab.deploy("-y", "--limit", dns)
        assert res.returncode != 0 and "could not find the SSH session" in res.out, res.out
        assert "Status: inactive" in lab.sh(dns, "ufw status").stdout
        # the explicit opt-out goes ahead
        with Data(lab) as data:
            data.add("dns_servers", "firewall_lockout_guard = False\n")
            assert lab.deploy("-y", "--limit", dns).returncode == 0
        assert "Status: active" in lab.sh(dns, "ufw status").stdout
    finally:
        lab.sh(dns, f"rm -f {HIDE_SESSION}")
    converge(lab)


def test_waiting_run_plans_after_it_gets_the_lock(lab) -> None:
    """While a run waits for the host lock, the host changes (another run finished):
    the waiting run must apply a plan made from the host as it is then."""
    converge(lab)
    mail = lab.by_kind("mail")[0]
    lab.sh(mail, "ufw delete allow 143,993/tcp >/dev/null")
    # meanwhile "the other run" changes the host: SMTP's rule goes
    deploy_while_locked(lab, mail, lambda: lab.sh(mail, "ufw delete allow 25,465,587/tcp >/dev/null"))
    # a plan made before the wait would have re-added only IMAP; SMTP is back too
    assert sorted(lab.show_added(mail)) == sorted(EXPECTED["mail"])


def test_value_ufw_refuses_stops_the_step_before_any_change(lab) -> None:
    """Defence in depth behind validation: the host-side step builds every rule before
    it changes one; a rule ufw refuses (a quote in a comment) leaves the host as it was."""
    converge(lab)
    dns = lab.by_kind("dns")[0]
    deploy = TEST_LAB / "raw_deploy.py"
    deploy.write_text(
        "from froxlor_fleet.model.plan import RuleSpec\n"
        "from froxlor_fleet.operations import ufw\n"
        "ufw.rules_and_policies(name='raw', rules=[\n"
        "    RuleSpec(('22',), 'tcp', None, 'ssh'),\n"
        "    RuleSpec(('8081',), 'tcp', None, 'extra'),\n"
        "    RuleSpec(('8082',), 'tcp', None, 'extra', \"it's\")])\n")
    before = host_files(lab, [dns])
    res = lab.pyinfra("inventory.py", str(deploy), "-y", "--limit", dns)
    assert res.returncode != 0
    assert "ufw refuses rule" in res.out and "Traceback" not in res.out, res.out
    assert host_files(lab, [dns]) == before


def test_sudo_login_over_ipv6_moves_the_passive_range(lab) -> None:
    """What real fleets do, all at once on an ftp host: a non-root login with sudo, over
    an IPv6 session, changing the passive range (the candidate tried with proftpd -t,
    UFW keeping the old range until ProFTPd restarted, then closing it): every command
    arrives through sudo, FTPS works in the new range, a second run changes nothing."""
    converge(lab)
    web = lab.by_kind("web")[0]
    lab.sh(web, f": > {COMMAND_LOG}")
    inventory = v6_inventory(lab, web)
    with Data(lab) as data:
        data.sudo()
        data.set("ftp_servers", lab.group_data("ftp_servers").replace("(50000, 50100)", "(50200, 50300)"))
        res = lab.pyinfra(inventory, str(DEPLOY), "-y")
        assert res.returncode == 0, res.out
        ranges = [r for r in lab.show_added(web) if ":" in r.split()[2]]
        assert ranges == ["ufw allow 50200:50300/tcp comment 'froxlor-fleet:ftp'"]
        port, _ = ftp_transfer(lab.ip(web), timeout=10)
        assert 50200 <= port <= 50300
        assert_no_change(lab.pyinfra(inventory, str(DEPLOY), "-y"))
    assert all(line.startswith("sudo ") for line in commands_log(lab, web).splitlines()), \
        commands_log(lab, web)
    converge(lab)
