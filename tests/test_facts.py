"""The fact against output captured from real ufw 0.36.2 (tests/fixtures/capture.py)."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from froxlor_fleet import remote
from froxlor_fleet.facts import NOT_HELD, SECTION, UNREACHABLE, FleetHostState, parse_state
from froxlor_fleet.ftpconf.judge import conflicts
from froxlor_fleet.model import program
from froxlor_fleet.model.catalog import FRAGMENT_PATH
from froxlor_fleet.model.ufwrules import parse_tuple_line
from froxlor_fleet.operations import ftpplan
from helpers import UFW_FIXTURES, fact_lines, with_fragment


def test_pristine_ufw() -> None:
    state = parse_state(fact_lines("pristine"))
    ufw = state.ufw
    assert ufw.installed and not ufw.conf_enabled and not ufw.running and not ufw.active
    assert (ufw.incoming, ufw.outgoing, ufw.logging, ufw.ipv6) == ("deny", "allow", "low", True)
    assert ufw.rules == []
    assert (state.ssh_client, state.ssh_server, state.ssh_port) == ("10.213.77.1", "10.213.77.11", 22)
    assert state.fragment is None and state.fragment_sha256 is None


def test_converged_host_is_active_with_marked_rules() -> None:
    ufw = parse_state(fact_lines("converged-web-ftp")).ufw
    assert ufw.active
    assert [(r.family, r.dport, r.label) for r in ufw.rules] == [
        (4, "21", "ftp"), (4, "49152:65534", "ftp"), (4, "22", "ssh"), (4, "80,443", "web"),
        (6, "21", "ftp"), (6, "49152:65534", "ftp"), (6, "22", "ssh"), (6, "80,443", "web"),
    ]


def test_hand_made_rules_policies_and_logging() -> None:
    ufw = parse_state(fact_lines("hand-made-mixed")).ufw
    assert (ufw.incoming, ufw.logging) == ("reject", "medium")
    by_text = {(r.family, r.describe()): r for r in ufw.rules}
    assert by_text[(4, "allow 8080/tcp")].comment == "hand made"
    assert not by_text[(4, "allow 8080/tcp")].managed
    assert by_text[(4, "allow 3306/tcp from 10.0.0.0/8")].label == "mysql"
    assert by_text[(6, "allow 3306/tcp from 2001:db8::/32")].managed
    assert (4, "deny any from 203.0.113.7") in by_text
    assert by_text[(4, "allow 53/udp [in_eth0]")].iface == "in_eth0"
    assert by_text[(4, "allow OpenSSH/tcp")].dapp == "OpenSSH"
    assert by_text[(4, "limit 2222/tcp")].verdict == "limit"
    route = [r for r in ufw.rules if r.action.startswith("route:")]
    assert len(route) == 1 and route[0].iface == "in_eth0!out_eth1"


def test_tuple_text_round_trips_every_captured_line() -> None:
    lines = 0
    for rules_file in UFW_FIXTURES.glob("*/user*.rules"):
        family = 6 if rules_file.name == "user6.rules" else 4
        for line in rules_file.read_text().splitlines():
            if line.startswith("### tuple ###"):
                rule = parse_tuple_line(line, family)
                assert rule is not None
                assert "### tuple ### " + rule.tuple_text() == line
                lines += 1
    assert lines >= 20


def test_fragment_is_read_exactly() -> None:
    text = "# header\nPassivePorts 50000 50100\n"
    state = parse_state(with_fragment(fact_lines("pristine"), text))
    assert state.fragment == text
    assert state.fragment_sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_fact_command_quotes_the_fragment_path() -> None:
    command = FleetHostState().command(fragment_path="/etc/proftpd/conf.d/a b;rm -rf x").get_raw_value()
    assert (" froxlor-fleet '/etc/proftpd/conf.d/a b;rm -rf x'"
            " /var/lib/froxlor-fleet/proftpd-fragment.loaded"
            " /var/lib/froxlor-fleet/pureftpd-range.loaded"
            f" {program.folder()} ; ") in command
    assert "ufw status" not in command  # shows nothing while inactive: read the files


def test_state_sh_reads_the_pureftpd_marker(tmp_path: Path) -> None:
    """state.sh's third argument: pure-ftpd's loaded-range marker (issue 22), read into
    ``HostState.pureftpd_loaded`` apart from ProFTPd's."""
    pure, frag_marker = tmp_path / "pure", tmp_path / "frag"
    pure.write_text("abc123")  # no final newline: framed all the same
    frag_marker.write_text("def456\n")
    out = subprocess.run(["sh", str(STATE_SH), str(tmp_path / "none.conf"), str(frag_marker),
                          str(pure)], capture_output=True, text=True, timeout=30).stdout
    state = parse_state(out.splitlines())
    assert (state.pureftpd_loaded, state.fragment_loaded) == ("abc123", "def456")
    assert parse_state(subprocess.run(["sh", str(STATE_SH)], capture_output=True, text=True,
                                      timeout=30).stdout.splitlines()).pureftpd_loaded is None


def test_default_is_an_empty_state() -> None:
    assert FleetHostState.default().ufw.rules == []


# --- files without a final newline (issue 22) -------------------------------------------
# The state read prints files between marker lines; a hand-edited file whose last byte is
# not a newline must not glue the next marker onto its last line (a lost section: the
# ftp dump -> "neither ProFTPd nor pure-ftpd is installed", /etc/default/ufw -> a real
# ACCEPT read as deny). The fragment's sha stays that of the exact bytes on the host.

IN_CI = os.environ.get("CI") == "true"
PROFTPD_TREE = Path(__file__).parent / "fixtures" / "proftpd" / "froxlor-bookworm"
WANTED = ftpplan.render_fragment((50000, 50100))
STATE_SH = Path(remote.__file__).parent / "state.sh"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def output_lines(stdout: str) -> list[str]:
    """Output split the way pyinfra does (each line without its newline)."""
    return [line.rstrip("\n") for line in stdout.splitlines(keepends=True)]


def test_parser_reads_a_fragment_without_final_newline_exactly() -> None:
    text = WANTED.rstrip("\n")
    lines = with_fragment(fact_lines("pristine"), None)
    lines += [f"{sha(text)} no-final-newline", *text.split("\n")]
    state = parse_state(lines)
    assert state.fragment == text and state.fragment_sha256 == sha(text)
    # Not byte-identical to the wanted fragment: the deploy rewrites it.
    assert ftpplan.fragment_digest(WANTED) != state.fragment_sha256


def test_parser_keeps_a_fragment_with_final_newline_and_trailing_blank_lines() -> None:
    for text in (WANTED, WANTED + "\n\n", "", "\n"):
        lines = with_fragment(fact_lines("pristine"), None)
        lines += [sha(text), *text.splitlines()]
        state = parse_state(lines)
        assert (state.fragment, state.fragment_sha256) == (text, sha(text))


def test_parser_reads_sections_after_newline_less_ufw_files() -> None:
    # What the state read prints for a ufw.conf / /etc/default/ufw without a final
    # newline: the file's lines, then each marker on a line of its own.
    lines = [f"{SECTION}conf", "ENABLED=yes", "LOGLEVEL=medium",
             f"{SECTION}default", "IPV6=no", 'DEFAULT_INPUT_POLICY="ACCEPT"',
             f"{SECTION}rules4", f"{SECTION}rules6", f"{SECTION}running", "yes"]
    ufw = parse_state(lines).ufw
    assert (ufw.active, ufw.logging, ufw.incoming, ufw.ipv6) == (True, "medium", "allow", False)


BUSYBOX_APPLETS = ("sh", "cat", "tail", "wc", "sha256sum", "cut", "tr", "sed")


def _fake_tools(tmp_path: Path, busybox: bool = False) -> Path:
    """A PATH directory whose iptables/ip answer nothing: the state read never asks
    this machine's firewall or interfaces. ``busybox``: state.sh's tools are busybox's."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in BUSYBOX_APPLETS if busybox else ():
        (tools / name).symlink_to(str(shutil.which("busybox")))
    for name in ("iptables", "ip"):
        (tools / name).write_text("#!/bin/sh\nexit 1\n")
        (tools / name).chmod(0o755)
    return tools


def _proftpd_root(tmp_path: Path, fragment: str | None, conf_tail: str = "") -> Path:
    """froxlor's ProFTPd tree with a fake binary and the fragment at FRAGMENT_PATH."""
    root = tmp_path / "root"
    shutil.copytree(PROFTPD_TREE, root)
    binary = root / "usr" / "sbin" / "proftpd"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    if fragment is not None:
        (root / FRAGMENT_PATH.lstrip("/")).write_bytes(fragment.encode())
    conf = root / "etc" / "proftpd" / "proftpd.conf"
    conf.write_text(conf.read_text().rstrip("\n") + conf_tail)
    return root


@pytest.mark.parametrize("shell", ["sh", "dash", "busybox"])
@pytest.mark.parametrize("fragment", [WANTED.rstrip("\n"), WANTED, "", "PassivePorts 50000 50100"],
                         ids=["wanted-without-final-newline", "wanted", "empty", "one-line"])
def test_state_and_dump_frame_files_without_final_newline(tmp_path: Path, shell: str,
                                                           fragment: str) -> None:
    """state.sh and the dump as the fact joins them, on a fragment and a loaded marker
    (its own path here) that may lack a final newline: the ftp section is not lost,
    the fragment is read byte-exact. No root: the paths are arguments / a temp root."""
    if shutil.which(shell) is None:
        if IN_CI and shell != "busybox":
            pytest.fail(f"{shell} is not installed")
        pytest.skip(f"{shell} is not installed")
    root = _proftpd_root(tmp_path, fragment)
    frag = root / FRAGMENT_PATH.lstrip("/")
    marker = tmp_path / "loaded"
    marker.write_text(sha(fragment))  # no final newline: hand-made
    dump = FleetHostState().command().get_raw_value().split(f"; echo '{SECTION}ftp'; ", 1)[1]
    argv = ["busybox", "sh"] if shell == "busybox" else [shell]
    command = (f"{' '.join(argv)} {STATE_SH} {frag} {marker}; echo '{SECTION}ftp'; {dump}")
    env = {**os.environ, "FROXLOR_FLEET_ROOT": str(root),
           "PATH": f"{_fake_tools(tmp_path, shell == 'busybox')}:{os.environ['PATH']}"}
    out = subprocess.run(argv + ["-c", command], capture_output=True, check=True, env=env).stdout
    state = parse_state(output_lines(out.decode()))
    assert "proftpd" in state.ftp.installed, out.decode()
    assert state.fragment == fragment and state.fragment_sha256 == sha(fragment)
    assert state.fragment_loaded == sha(fragment)
    assert (state.fragment_sha256 == ftpplan.fragment_digest(WANTED)) == (fragment == WANTED)
    from_fragment = [s.value for s in state.ftp.proftpd.occurrences if s.file == FRAGMENT_PATH]
    assert from_fragment == ([] if fragment == "" else ["50000 50100"]), out.decode()


@pytest.mark.parametrize("shell", ["sh", "dash", "busybox"])
def test_state_sh_frames_files_with_the_shells_own_reads(tmp_path: Path, shell: str) -> None:
    """A no-op run is this read on every host, every run: the files it shows (ufw's,
    the markers, the fragment) and the session's address are read by the shell itself;
    the tools it used to start per file (cat, tail, wc, cut) are not started at all, and
    what it shows is the same, a final line without its newline included."""
    if shutil.which(shell) is None:
        if IN_CI and shell != "busybox":
            pytest.fail(f"{shell} is not installed")
        pytest.skip(f"{shell} is not installed")
    fragment = WANTED.rstrip("\n")  # no final newline
    root = _proftpd_root(tmp_path, fragment)
    frag = root / FRAGMENT_PATH.lstrip("/")
    marker = tmp_path / "loaded"
    marker.write_text(sha(fragment))
    tools = _fake_tools(tmp_path, shell == "busybox")
    log = tmp_path / "started.log"
    for name in ("cat", "tail", "wc", "cut"):
        if (tools / name).exists():
            (tools / name).unlink()
        (tools / name).write_text(f"#!/bin/sh\necho {name} >> {log}\nexit 1\n")
        (tools / name).chmod(0o755)
    argv = ["busybox", "sh"] if shell == "busybox" else [shell]
    env = {**os.environ, "FROXLOR_FLEET_ROOT": str(root), "PATH": f"{tools}:{os.environ['PATH']}",
           "SSH_CONNECTION": "10.0.0.1 50000 10.0.0.5 22"}
    out = subprocess.run(argv + [str(STATE_SH), str(frag), str(marker)], capture_output=True,
                         check=True, env=env).stdout
    assert not log.exists(), log.read_text()
    state = parse_state(output_lines(out.decode()))
    assert state.fragment == fragment and state.fragment_sha256 == sha(fragment)
    assert state.fragment_loaded == sha(fragment)
    assert (state.ssh_client, state.ssh_server, state.ssh_port) == ("10.0.0.1", "10.0.0.5", 22)


# --- the real state read against newline-less /etc files, in a private mount namespace --

NAMESPACE_SCRIPT = r"""
set -eu
src=$1 outer=$2 fact=$3
# Refuse to mount anything unless this is a mount namespace of its own.
[ "$(readlink /proc/self/ns/mnt)" != "$outer" ] || exit 99
mount --make-rprivate /
mount -t tmpfs froxlor-fleet-test /etc/ufw
cp "$src/ufw.conf" "$src/user.rules" "$src/user6.rules" /etc/ufw/
mount --bind "$src/default-ufw" /etc/default/ufw
mount -t tmpfs froxlor-fleet-test /etc/proftpd
cp -R "$src/proftpd/." /etc/proftpd/
mount -t tmpfs froxlor-fleet-test /usr/local/sbin
cp "$src/proftpd-binary" /usr/local/sbin/proftpd
if [ -d /var/lib/froxlor-fleet ]; then
  mount -t tmpfs froxlor-fleet-test /var/lib/froxlor-fleet
else
  mount -t tmpfs froxlor-fleet-test /var/lib
  mkdir /var/lib/froxlor-fleet
fi
cp "$src/loaded" /var/lib/froxlor-fleet/proftpd-fragment.loaded
exec sh -c "$fact"
"""


def need_root_namespace() -> None:
    """The real state read against /etc needs root and mount namespaces: skip without
    them locally, fail in CI (a proof that did not run proves nothing)."""
    missing = [what for what, ok in (
        ("root on Linux", sys.platform.startswith("linux") and os.geteuid() == 0),
        ("unshare", shutil.which("unshare")),
        ("ufw (/etc/ufw, /etc/default/ufw)",
         os.path.isdir("/etc/ufw") and os.path.isfile("/etc/default/ufw")),
        ("/etc/proftpd", os.path.isdir("/etc/proftpd")),
        ("/usr/local/sbin", os.path.isdir("/usr/local/sbin")),
    ) if not ok]
    if missing:
        if IN_CI:
            pytest.fail(f"CI must run the namespace state-read test: missing {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")


def _run_fact_in_namespace(tmp_path: Path, files: dict[str, str]) -> str:
    src = tmp_path / "src"
    shutil.copytree(PROFTPD_TREE / "etc" / "proftpd", src / "proftpd")
    for name, text in files.items():
        (src / name).write_bytes(text.encode())
    (src / "proftpd-binary").write_text("#!/bin/sh\n")
    (src / "proftpd-binary").chmod(0o755)
    fact = FleetHostState().command().get_raw_value()
    env = {**os.environ, "PATH": f"{_fake_tools(tmp_path)}:{os.environ['PATH']}"}
    env.pop("FROXLOR_FLEET_ROOT", None)
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          NAMESPACE_SCRIPT, "ns", str(src), os.readlink("/proc/self/ns/mnt"), fact],
                         capture_output=True, env=env)
    assert run.returncode == 0, run.stderr.decode()
    return run.stdout.decode()


@pytest.mark.parametrize("eol", ["", "\n"], ids=["no-final-newline", "final-newline"])
def test_real_state_read_on_newline_less_etc_files(tmp_path: Path, eol: str) -> None:
    need_root_namespace()
    before = {p: Path(p).read_bytes() for p in ("/etc/ufw/ufw.conf", "/etc/default/ufw")}
    fragment = WANTED.rstrip("\n") + eol
    conf = (PROFTPD_TREE / "etc" / "proftpd" / "proftpd.conf").read_text().rstrip("\n") + eol
    tuple4 = ("### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in"
              " comment=66726f786c6f722d666c6565743a737368")
    files = {
        "ufw.conf": "ENABLED=yes\nLOGLEVEL=medium" + eol,
        "default-ufw": 'IPV6=no\nDEFAULT_INPUT_POLICY="ACCEPT"\nDEFAULT_OUTPUT_POLICY="DROP"' + eol,
        "user.rules": f"*filter\n{tuple4}" + eol,
        "user6.rules": "",
        "loaded": sha(fragment) + eol,
        "proftpd/proftpd.conf": conf,
        "proftpd/conf.d/" + Path(FRAGMENT_PATH).name: fragment,
    }
    out = _run_fact_in_namespace(tmp_path, files)
    state = FleetHostState().process(output_lines(out))
    assert before == {p: Path(p).read_bytes() for p in before}  # this machine's /etc untouched
    ufw = state.ufw
    assert (ufw.conf_enabled, ufw.logging) == (True, "medium"), out
    assert (ufw.incoming, ufw.outgoing, ufw.ipv6) == ("allow", "deny", False), out
    assert [r.dport for r in ufw.rules] == ["22"], out
    assert state.ftp.installed.get("proftpd") == "/usr/local/sbin/proftpd", out
    assert state.fragment == fragment and state.fragment_sha256 == sha(fragment)
    assert state.fragment_loaded == sha(fragment)
    # The deploy's decision (ftpplan.py, the operations and deploys.py compare digests): only
    # the byte-identical fragment is left alone.
    assert (ftpplan.fragment_digest(WANTED) == state.fragment_sha256) == (eol == "\n")
    assert not conflicts(state.ftp, FRAGMENT_PATH, (50000, 50100)), out


def test_state_sh_reports_the_placed_program(tmp_path: Path) -> None:
    """The program section: each placed file's sha256, and "unsafe" when anyone but root
    could write it (then hostprogram.placed is False and the program is placed again)."""
    import os

    folder = tmp_path / "lib" / "program" / "v1"
    folder.mkdir(parents=True)
    (folder / "fleethost.py").write_text("print(1)\n")
    os.chmod(folder / "fleethost.py", 0o600)
    for d in (folder, folder.parent, folder.parent.parent):
        os.chmod(d, 0o700)

    def read():
        out = subprocess.run(["sh", str(STATE_SH), "", "", "", str(folder)], capture_output=True,
                             text=True, timeout=30).stdout
        return parse_state(out.splitlines())

    state = read()
    assert state.program == {"fleethost.py": hashlib.sha256(b"print(1)\n").hexdigest()}
    assert state.program_unsafe is (os.geteuid() != 0)  # root-owned only when run as root
    os.chmod(folder / "fleethost.py", 0o666)
    assert read().program_unsafe


# --- the host's own addresses (issue 18: sources naming an inventory group) -------------

# ``ip -o addr show`` as iproute2 prints it: loopback (scope host), global v4 with a
# secondary and a peer address, global v6, a privacy (temporary) and a deprecated v6
# address, one still in DAD (tentative), link-local v6 (scope link), a failed DAD, and
# an IPv4 label that reads like a flag (ip glues a label to the "\" after it).
TAIL = r"\       valid_lft forever preferred_lft forever"  # each line ends so
IP_ADDR = "".join(line + TAIL + "\n" for line in (
    "1: lo    inet 127.0.0.1/8 scope host lo",
    "1: lo    inet6 ::1/128 scope host noprefixroute ",
    "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0",
    "2: eth0    inet 10.0.0.50/24 brd 10.0.0.255 scope global secondary eth0",
    "2: eth0    inet6 2001:db8::99/64 scope global temporary dynamic ",
    "2: eth0    inet6 fd00::5/64 scope global ",
    "2: eth0    inet6 2001:db8::98/64 scope global deprecated dynamic mngtmpaddr noprefixroute ",
    "2: eth0    inet6 2001:db8::97/64 scope global tentative ",
    "2: eth0    inet6 fd00::bad/64 scope global tentative dadfailed ",
    "2: eth0    inet6 fe80::5/64 scope link ",
    "3: tun0    inet 192.0.2.1 peer 192.0.2.2/32 scope global tun0",
    "4: temporary    inet 192.0.2.9/24 scope global temporary",
))
# The addrs section state.sh makes of it: each global address, then its flags.
ADDRS = ["10.0.0.5", "10.0.0.50", "2001:db8::99 temporary", "fd00::5",
         "2001:db8::98 deprecated", "2001:db8::97 tentative", "fd00::bad tentative dadfailed",
         "192.0.2.1", "192.0.2.9"]


def _counting_ip(tmp_path: Path, busybox: bool) -> tuple[Path, Path]:
    """A PATH directory whose ``ip`` prints ``IP_ADDR`` and logs each run to a file."""
    tools = _fake_tools(tmp_path, busybox)
    runs = tmp_path / "ip-runs"
    (tools / "ip").write_text(f"#!/bin/sh\necho \"$*\" >> {runs}\ncat <<'EOF'\n{IP_ADDR}EOF\n")
    return tools, runs


@pytest.mark.parametrize("shell", ["sh", "dash", "busybox"])
@pytest.mark.parametrize("session", ["10.0.0.1 50022 10.0.0.5 22", ""], ids=["ssh", "no-session"])
def test_state_sh_reads_the_host_addresses_from_one_ip_run(tmp_path: Path, session: str,
                                                           shell: str) -> None:
    """The addrs section: the host's global IPv4 and IPv6 addresses (no loopback or
    link-local ones), each with its flags, from the same one ``ip -o addr show`` that
    finds the session's interface: a no-op run starts no process more than before. Its
    groups' addresses are all the host holds (a temporary one is a source it connects
    from; not one that failed DAD), the probe's those customers reach."""
    if shutil.which(shell) is None:
        if IN_CI and shell != "busybox":
            pytest.fail(f"{shell} is not installed")
        pytest.skip(f"{shell} is not installed")
    tools, runs = _counting_ip(tmp_path, shell == "busybox")
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "SSH_CONNECTION": session}
    argv = ["busybox", "sh"] if shell == "busybox" else [shell]
    out = subprocess.run([*argv, str(STATE_SH)], capture_output=True, text=True, env=env,
                         timeout=30, check=True).stdout
    lines = output_lines(out)
    start = lines.index(f"{SECTION}addrs") + 1
    assert lines[start:start + len(ADDRS) + 1] == [*ADDRS, f"{SECTION}ufw"], out
    state = parse_state(lines)
    assert state.addresses == ("10.0.0.5", "10.0.0.50", "2001:db8::99", "fd00::5",
                               "2001:db8::98", "2001:db8::97", "192.0.2.1", "192.0.2.9"), out
    assert state.reachable == ("10.0.0.5", "10.0.0.50", "fd00::5", "192.0.2.1", "192.0.2.9")
    assert state.ssh_interface == ("eth0" if session else None)
    assert runs.read_text().splitlines() == ["-o addr show"]


@pytest.mark.parametrize("flag", sorted(UNREACHABLE))
def test_state_sh_reports_every_flag_the_parser_decides_on(tmp_path: Path, flag: str) -> None:
    """facts.py alone decides what a flag excludes (NOT_HELD, UNREACHABLE); state.sh
    must report each of them, or a flag added there would silently change nothing."""
    tools = _fake_tools(tmp_path)
    (tools / "ip").write_text("#!/bin/sh\ncat <<'EOF'\n"
                              f"2: eth0    inet6 2001:db8::7/64 scope global {flag} {TAIL}\n"
                              "2: eth0    inet6 2001:db8::8/64 scope global nodad optimistic "
                              f"stable-privacy home permanent autojoin {TAIL}\nEOF\n")
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "SSH_CONNECTION": ""}
    lines = output_lines(subprocess.run(["sh", str(STATE_SH)], capture_output=True, text=True,
                                        env=env, timeout=30, check=True).stdout)
    start = lines.index(f"{SECTION}addrs") + 1
    assert lines[start:start + 2] == [f"2001:db8::7 {flag}", "2001:db8::8"]
    state = parse_state(lines)
    assert state.reachable == ("2001:db8::8",)
    assert state.addresses == (("2001:db8::8",) if flag in NOT_HELD
                               else ("2001:db8::7", "2001:db8::8"))


def test_state_without_an_addrs_section_has_no_addresses() -> None:
    state = parse_state(fact_lines("converged-web-ftp"))
    assert (state.addresses, state.reachable) == ((), ())
    lines = [f"{SECTION}addrs", "10.0.0.5", "", "not-an-address", "fd00::5%eth0", "fd00::5",
             "fe80::1%eth0 temporary", "2001:db8::99 temporary", "2001:db8::1 dadfailed",
             "10.0.0.5 deprecated", "2001:db8::2 a-flag-nobody-decides-on"]
    state = parse_state(lines)
    assert state.addresses == ("10.0.0.5", "fd00::5", "2001:db8::99", "2001:db8::2")
    assert state.reachable == ("10.0.0.5", "fd00::5", "2001:db8::2")
