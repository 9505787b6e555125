"""The FTP daemon dump: the real host-side script against temp trees, then the replay.

Every case runs ``froxlor_fleet/remote/proftpd_dump.sh`` with ``sh`` on a root tree
built here (froxlor's shape from tests/fixtures/proftpd/, changed per case) and feeds
its output to ``parse_dump``. The last tests hold the replay against the real proftpd
binary's own parse (``proftpd -t``; syntax check only, no daemon).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from froxlor_fleet import remote
from froxlor_fleet.ftpconf import judge
from froxlor_fleet.ftpconf.daemon import choose_daemon
from froxlor_fleet.ftpconf.dump import FtpConfig, PureFtpdConfig, dump_command, parse_dump
from froxlor_fleet.model.catalog import FRAGMENT_PATH

FIXTURE = Path(__file__).parent / "fixtures" / "proftpd" / "froxlor-bookworm"
SCRIPT = Path(remote.__file__).parent / "proftpd_dump.sh"
CONF = "/etc/proftpd/proftpd.conf"
WANT = (50000, 50100)
NEEDS_PROFTPD = pytest.mark.skipif(
    shutil.which("proftpd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None
    and os.environ.get("CI") != "true",
    reason="proftpd is not installed (required in CI)")


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def host(tmp_path: Path, files: dict[str, str] | None = None, *, froxlor: bool = True,
         bins: tuple[str, ...] = ("proftpd",)) -> Path:
    """A host root: froxlor's ProFTPd files (optional), ``files`` on top, fake binaries."""
    root = tmp_path / "root"
    if froxlor:
        shutil.copytree(FIXTURE, root)
    root.mkdir(exist_ok=True)
    for name in bins:
        binary = root / "usr" / "sbin" / name
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    write(root, files or {})
    return root


def append(root: Path, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.write_text(path.read_text() + text)


def edit(root: Path, old: str, new: str, rel: str = CONF) -> None:
    """Replace ``old``, which must be there, with ``new`` in ``rel`` below ``root``."""
    path = root / rel.lstrip("/")
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new))


def dump(root: Path, *args: str) -> list[str]:
    out = subprocess.run(["sh", str(SCRIPT), str(root), *args], capture_output=True,
                         text=True, check=True)
    assert out.stderr == ""
    return out.stdout.splitlines()


def read(root: Path) -> FtpConfig:
    return parse_dump(dump(root))


def line_of(root: Path, rel: str, text: str) -> int:
    lines = (root / rel.lstrip("/")).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip() == text)


# --- froxlor's configuration as it is written --------------------------------------


def test_froxlor_config_as_written_has_no_conflict(tmp_path):
    cfg = read(host(tmp_path))
    assert cfg.installed == {"proftpd": "/usr/sbin/proftpd"}
    assert cfg.proftpd.found
    assert cfg.proftpd.parse_order == [
        CONF, "/etc/proftpd/modules.conf", "/etc/proftpd/sql.conf", "/etc/proftpd/tls.conf",
        "/etc/proftpd/conf.d/99-froxlor-ratelimit.conf"]
    assert cfg.proftpd.passive_ports is None  # commented out by froxlor
    assert cfg.proftpd.masquerade is None
    result = judge.check(cfg, FRAGMENT_PATH, WANT, None)
    assert result.conflicts == [] and result.notes == []
    eff = result.effective
    # '9' (0x39) sorts before 'f' (0x66): froxlor's file first, then ours.
    assert eff.parse_order[-2:] == ["/etc/proftpd/conf.d/99-froxlor-ratelimit.conf", FRAGMENT_PATH]
    assert eff.passive_ports.ours and eff.passive_ports.ports == WANT


def test_our_fragment_on_the_host_is_read_and_replaced_by_the_wanted_one(tmp_path):
    root = host(tmp_path, {FRAGMENT_PATH: "# managed\nPassivePorts 1024 1025\n"})
    cfg = read(root)
    assert cfg.proftpd.passive_ports.origin == f"{FRAGMENT_PATH}:2"
    assert cfg.proftpd.passive_ports.ports == (1024, 1025)
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT) == []  # the stale one is about to go


def uncomment_passive_ports(root: Path) -> int:
    """What froxlor's "Service Ports" page has admins do; returns the line number."""
    edit(root, "# PassivePorts                  49152 65534", "PassivePorts 49152 65534")
    return line_of(root, CONF, "PassivePorts 49152 65534")


def test_admin_passive_ports_in_proftpd_conf_differs(tmp_path):
    root = host(tmp_path)
    n = uncomment_passive_ports(root)
    cfg = read(root)
    assert cfg.proftpd.passive_ports.origin == f"{CONF}:{n}"
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT) == [
        f"{CONF}:{n} sets PassivePorts 49152 65534, which ProFTPd uses instead of this "
        f"deploy's 50000 50100 ({FRAGMENT_PATH}); remove it from proftpd.conf (this deploy "
        "does not edit froxlor's proftpd.conf; froxlor rewrites it and keeps it commented out)"]


def test_admin_passive_ports_after_the_include_loses(tmp_path):
    root = host(tmp_path)
    append(root, CONF, "PassivePorts 49152 65534\n")  # below 'Include .../conf.d/'
    result = judge.check(read(root), FRAGMENT_PATH, WANT)
    assert result.conflicts == []
    assert result.notes == [f"{CONF}:{line_of(root, CONF, 'PassivePorts 49152 65534')} sets "
                            "PassivePorts 49152 65534, ignored: ProFTPd uses the first one "
                            f"({FRAGMENT_PATH})"]


def test_admin_passive_ports_in_proftpd_conf_equal_is_a_note(tmp_path):
    root = host(tmp_path)
    # Above the Include, indented and in another case: ProFTPd's names are case-blind.
    edit(root, "# PassivePorts                  49152 65534", "  passiveports  50000   50100")
    result = judge.check(read(root), FRAGMENT_PATH, WANT, None)
    assert result.conflicts == []
    assert len(result.notes) == 1
    assert "sets PassivePorts 50000 50100 too; ProFTPd uses that one" in result.notes[0]


def test_commented_passive_ports_are_not_directives(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/conf.d/00-old.conf":
                           "#PassivePorts 1 2\n   # PassivePorts 3 4\n\t#MasqueradeAddress 192.0.2.1\n"})
    cfg = read(root)
    assert cfg.proftpd.occurrences == []
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT, "192.0.2.7") == []


def test_earlier_sorting_conf_d_file_wins_later_one_is_ignored(tmp_path):
    root = host(tmp_path, {
        "/etc/proftpd/conf.d/10-passive.conf": "PassivePorts 40000 40100\n",
        "/etc/proftpd/conf.d/zz-passive.conf": "PassivePorts 41000 41100\n",
    })
    result = judge.check(read(root), FRAGMENT_PATH, WANT, None)
    assert result.conflicts == [
        "/etc/proftpd/conf.d/10-passive.conf:1 sets PassivePorts 40000 40100, which ProFTPd "
        f"uses instead of this deploy's 50000 50100 ({FRAGMENT_PATH}); remove it from "
        "/etc/proftpd/conf.d/10-passive.conf (ProFTPd reads /etc/proftpd/conf.d/ in byte order "
        "and uses the first one; 10-passive.conf comes before froxlor-fleet-passive-ports.conf)"]
    assert any(n.startswith("/etc/proftpd/conf.d/zz-passive.conf:1 sets PassivePorts 41000 41100,"
                            " ignored") for n in result.notes)


def test_byte_order_not_locale_order(tmp_path):
    # strcmp: 'Z' (0x5a) < '_' (0x5f) < 'f' (0x66); a locale sort would put 'f...' first.
    root = host(tmp_path, {"/etc/proftpd/conf.d/Zebra.conf": "PassivePorts 40000 40100\n",
                           "/etc/proftpd/conf.d/_x.conf": "MaxInstances 5\n"})
    eff = judge.check(read(root), FRAGMENT_PATH, WANT).effective
    assert eff.parse_order[-4:] == ["/etc/proftpd/conf.d/99-froxlor-ratelimit.conf",
                                    "/etc/proftpd/conf.d/Zebra.conf",
                                    "/etc/proftpd/conf.d/_x.conf", FRAGMENT_PATH]
    assert eff.passive_ports.file == "/etc/proftpd/conf.d/Zebra.conf"


def test_backups_and_dot_files_in_conf_d_are_read(tmp_path):
    # A directory Include reads every entry: '.old' (0x2e) and backups sort early.
    root = host(tmp_path, {"/etc/proftpd/conf.d/.old": "PassivePorts 40000 40100\n",
                           "/etc/proftpd/conf.d/10-passive.conf~": "PassivePorts 41000 41100\n",
                           "/etc/proftpd/conf.d/20-x.conf.frx.bak": "PassivePorts 42000 42100\n"})
    cfg = read(root)
    eff = judge.check(cfg, FRAGMENT_PATH, WANT).effective
    assert eff.parse_order[-5:] == [
        "/etc/proftpd/conf.d/.old", "/etc/proftpd/conf.d/10-passive.conf~",
        "/etc/proftpd/conf.d/20-x.conf.frx.bak", "/etc/proftpd/conf.d/99-froxlor-ratelimit.conf",
        FRAGMENT_PATH]
    [conflict] = judge.conflicts(cfg, FRAGMENT_PATH, WANT)
    assert conflict.startswith("/etc/proftpd/conf.d/.old:1 sets PassivePorts 40000 40100")


def test_include_options_ignore_temp_files(tmp_path):
    # IgnoreTempFiles skips '*~' and '*.sw?' only, with FNM_PERIOD: '.x~' is still read,
    # and froxlor's '.frx.bak' is no temp file.
    root = host(tmp_path, {"/etc/proftpd/conf.d/10-passive.conf~": "PassivePorts 41000 41100\n",
                           "/etc/proftpd/conf.d/11.conf.swp": "PassivePorts 41000 41100\n",
                           "/etc/proftpd/conf.d/.12~": "MaxInstances 4\n",
                           "/etc/proftpd/conf.d/20-x.conf.frx.bak": "PassivePorts 42000 42100\n"})
    edit(root, "# Custom configuration\n", "IncludeOptions IgnoreTempFiles\n")
    cfg = read(root)
    eff = judge.check(cfg, FRAGMENT_PATH, WANT).effective
    assert eff.parse_order[-4:] == [
        "/etc/proftpd/conf.d/.12~", "/etc/proftpd/conf.d/20-x.conf.frx.bak",
        "/etc/proftpd/conf.d/99-froxlor-ratelimit.conf", FRAGMENT_PATH]
    [conflict] = judge.conflicts(cfg, FRAGMENT_PATH, WANT)
    assert conflict.startswith("/etc/proftpd/conf.d/20-x.conf.frx.bak:1 sets PassivePorts 42000")


def test_froxlor_backup_of_proftpd_conf_is_not_read(tmp_path):
    cfg = read(host(tmp_path))
    assert "/etc/proftpd/proftpd.conf.frx.bak" in cfg.tree.entries
    assert "/etc/proftpd/proftpd.conf.frx.bak" not in cfg.proftpd.parse_order
    assert all(o.file != "/etc/proftpd/proftpd.conf.frx.bak" for o in cfg.proftpd.occurrences)


def test_subdirectory_of_conf_d_is_not_read(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/conf.d/00-sub/passive.conf": "PassivePorts 40000 40100\n"})
    cfg = read(root)
    assert "/etc/proftpd/conf.d/00-sub/passive.conf" in cfg.tree.entries  # listed...
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT) == []  # ...but ProFTPd does not recurse


def test_include_glob_before_conf_d(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/custom/passive.conf": "PassivePorts 40000 40100\n",
                           "/etc/proftpd/custom/.hidden.conf": "PassivePorts 1024 1025\n",
                           "/etc/proftpd/custom/notes.txt": "PassivePorts 1026 1027\n"})
    edit(root, "# Custom configuration\n", "Include /etc/proftpd/custom/*.conf\n")
    cfg = read(root)
    assert "/etc/proftpd/custom/.hidden.conf" not in cfg.proftpd.parse_order  # FNM_PERIOD
    assert "/etc/proftpd/custom/notes.txt" not in cfg.proftpd.parse_order
    [conflict] = judge.conflicts(cfg, FRAGMENT_PATH, WANT)
    assert conflict.startswith("/etc/proftpd/custom/passive.conf:1 sets PassivePorts 40000 40100")
    assert conflict.endswith("remove it from /etc/proftpd/custom/passive.conf (ProFTPd reads it "
                             f"before {FRAGMENT_PATH})")


def test_glob_in_a_directory_component(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/sites/b/ftp.conf": "PassivePorts 41000 41100\n",
                           "/etc/proftpd/sites/a/ftp.conf": "PassivePorts 40000 40100\n"})
    edit(root, "# Custom configuration\n", "Include /etc/proftpd/sites/*/ftp.conf\n")
    eff = judge.check(read(root), FRAGMENT_PATH, WANT).effective
    assert eff.parse_order.index("/etc/proftpd/sites/a/ftp.conf") < eff.parse_order.index(
        "/etc/proftpd/sites/b/ftp.conf")
    assert eff.passive_ports.file == "/etc/proftpd/sites/a/ftp.conf"


def test_include_outside_etc_proftpd_is_followed(tmp_path):
    root = host(tmp_path, {"/srv/ftp/passive.conf": "PassivePorts 40000 40100\n",
                           "/srv/ftp/more/x.conf": "MasqueradeAddress 192.0.2.9\n"})
    edit(root, "# Custom configuration\n",
         "Include /srv/ftp/passive.conf\nInclude /srv/ftp/more/\nInclude /opt/missing/*.conf\n")
    lines = dump(root)
    assert "@missing /opt/missing" in lines
    cfg = parse_dump(lines)
    assert cfg.proftpd.masquerade.origin == "/srv/ftp/more/x.conf:1"
    assert cfg.proftpd.unknown == []
    [conflict] = judge.conflicts(cfg, FRAGMENT_PATH, WANT)
    assert conflict.startswith("/srv/ftp/passive.conf:1 sets PassivePorts 40000 40100")


def test_symlinked_include_directory(tmp_path):
    root = host(tmp_path, {"/srv/real/passive.conf": "PassivePorts 40000 40100\n"})
    os.symlink("real", root / "srv" / "link")
    edit(root, "# Custom configuration\n", "Include /srv/link/\nInclude /srv/link/*.conf\n")
    # Plain path to a symlinked directory: read as a file, EISDIR, skipped; the glob
    # refuses a symlinked directory without AllowSymlinks. Either way: not read.
    cfg = read(root)
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT) == []
    # With AllowSymlinks ProFTPd reads it, and the dump did not look behind the link.
    (root / CONF.lstrip("/")).write_text("IncludeOptions AllowSymlinks\n"
                                         + (root / CONF.lstrip("/")).read_text())
    [conflict] = judge.conflicts(read(root), FRAGMENT_PATH, WANT)
    assert conflict.startswith(f"ProFTPd reads /srv/link/*.conf (Include at {CONF}:")
    assert "cannot tell whether it sets PassivePorts" in conflict


def test_global_is_appended_after_the_servers_own(tmp_path):
    # <Global> stands before the Include, yet the server's own value (ours) wins:
    # fixup_globals() appends <Global> contents at the end of every server's list.
    root = host(tmp_path)
    edit(root, "Port				21\n",
         "Port				21\n<Global>\n  PassivePorts 40000 40100\n</Global>\n")
    cfg = read(root)
    assert cfg.proftpd.passive_ports.global_from == 0  # today: only the <Global> one
    result = judge.check(cfg, FRAGMENT_PATH, WANT)
    assert result.conflicts == []
    assert result.effective.passive_ports.ours
    assert any("(inside <Global>) sets PassivePorts 40000 40100, ignored" in n
               for n in result.notes)


def test_virtual_host_own_value_and_missing_value(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/virtuals.conf": (
        "<VirtualHost 192.0.2.5>\n  ServerName a\n  PassivePorts 40000 40100\n</VirtualHost>\n"
        "<VirtualHost 192.0.2.6 192.0.2.16>\n  ServerName b\n</VirtualHost>\n"
        "<VirtualHost 192.0.2.7>\n  PassivePorts 50000 50100\n</VirtualHost>\n")})
    edit(root, "#Include /etc/proftpd/virtuals.conf", "Include /etc/proftpd/virtuals.conf")
    cfg = read(root)
    assert [v.name for v in cfg.proftpd.vhosts] == ["192.0.2.5", "192.0.2.6 192.0.2.16", "192.0.2.7"]
    assert cfg.proftpd.passive_ports is None  # a vhost's value is not the main server's
    found = judge.conflicts(cfg, FRAGMENT_PATH, WANT)
    assert found == [
        "<VirtualHost 192.0.2.5> (/etc/proftpd/virtuals.conf:1) uses PassivePorts 40000 40100 "
        "from /etc/proftpd/virtuals.conf:3, not this deploy's 50000 50100 (the fragment "
        "applies to the main server only); set it to 50000 50100",
        "<VirtualHost 192.0.2.6 192.0.2.16> (/etc/proftpd/virtuals.conf:5) has no PassivePorts, "
        "so its passive transfers use any port, not this deploy's 50000 50100: the fragment "
        "applies to the main server only; set PassivePorts 50000 50100 inside that "
        "<VirtualHost> (or in a <Global>)"]


def test_virtual_host_gets_global_value(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/conf.d/00-vhosts.conf": (
        "<Global>\nPassivePorts 50000 50100\n</Global>\n"
        "<VirtualHost 192.0.2.5>\nServerName a\n</VirtualHost>\n")})
    cfg = read(root)
    assert cfg.proftpd.vhosts[0].passive_ports.origin == "/etc/proftpd/conf.d/00-vhosts.conf:2"
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT) == []


def test_ifmodule_contents_count_as_active_and_say_so(tmp_path):
    root = host(tmp_path)
    append(root, "/etc/proftpd/tls.conf",
           "<IfModule mod_tls.c>\n  PassivePorts 40000 40100\n</IfModule>\n")
    [conflict] = judge.conflicts(read(root), FRAGMENT_PATH, WANT)
    assert "(inside <IfModule mod_tls.c>, counted as active) sets PassivePorts 40000" in conflict


def test_masquerade_address(tmp_path):
    root = host(tmp_path)
    edit(root, "# MasqueradeAddress		1.2.3.4", "MasqueradeAddress		192.0.2.1")
    cfg = read(root)
    n = line_of(root, CONF, "MasqueradeAddress		192.0.2.1")
    # Different: a conflict; equal: a note; none wanted: a note.
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT, "192.0.2.9") == [
        f"{CONF}:{n} sets MasqueradeAddress 192.0.2.1, which ProFTPd uses instead of this "
        f"deploy's 192.0.2.9 ({FRAGMENT_PATH}); remove it from proftpd.conf (this deploy does "
        "not edit froxlor's proftpd.conf; froxlor rewrites it and keeps it commented out)"]
    same = judge.check(cfg, FRAGMENT_PATH, WANT, "192.0.2.1")
    assert same.conflicts == [] and "MasqueradeAddress 192.0.2.1 too" in same.notes[0]
    unset = judge.check(cfg, FRAGMENT_PATH, WANT, None)
    assert unset.conflicts == []
    assert unset.notes == [f"ProFTPd announces MasqueradeAddress 192.0.2.1 ({CONF}:{n}); "
                           "this deploy sets none"]


def test_tls_masquerade_address_overrides_under_ftps(tmp_path):
    root = host(tmp_path)
    append(root, "/etc/proftpd/tls.conf", "TLSMasqueradeAddress 192.0.2.2\n")
    cfg = read(root)
    assert cfg.proftpd.tls_masquerade.value == "192.0.2.2"
    n = line_of(root, "/etc/proftpd/tls.conf", "TLSMasqueradeAddress 192.0.2.2")
    [conflict] = judge.conflicts(cfg, FRAGMENT_PATH, WANT, "192.0.2.9")
    assert conflict.startswith(f"/etc/proftpd/tls.conf:{n} sets TLSMasqueradeAddress 192.0.2.2: "
                               "FTPS sessions (froxlor requires TLS) announce it instead")
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT, "192.0.2.2") == []
    assert judge.conflicts(cfg, FRAGMENT_PATH, WANT, None) == []


def test_per_session_override_and_invalid_context(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/conf.d/zz.conf": (
        "<IfUser web1ftp1>\n  PassivePorts 40000 40100\n</IfUser>\n"
        "<Anonymous ~ftp>\n  PassivePorts 50000 50100\n</Anonymous>\n")})
    found = judge.conflicts(read(root), FRAGMENT_PATH, WANT)
    assert found == [
        "/etc/proftpd/conf.d/zz.conf:5 sets PassivePorts inside <Anonymous ~ftp>, where ProFTPd "
        "does not allow it (proftpd -t fails); remove it",
        "/etc/proftpd/conf.d/zz.conf:2 sets PassivePorts 40000 40100 inside <IfUser web1ftp1>: "
        "sessions matching it use that instead of this deploy's 50000 50100; remove it"]


def test_unreadable_value_is_a_conflict(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/conf.d/zz.conf": "PassivePorts \\\n  40000 40100\n"})
    [conflict] = judge.conflicts(read(root), FRAGMENT_PATH, WANT)
    assert "cannot read PassivePorts" in conflict


def test_fragment_not_included(tmp_path):
    root = host(tmp_path)
    edit(root, "Include /etc/proftpd/conf.d/\n", "")
    assert judge.conflicts(read(root), FRAGMENT_PATH, WANT) == [
        f"ProFTPd never reads {FRAGMENT_PATH}: no Include in {CONF} reaches it (froxlor's "
        "proftpd.conf ends with 'Include /etc/proftpd/conf.d/'); restore that line"]


def test_fragment_included_inside_a_virtual_host(tmp_path):
    root = host(tmp_path)
    edit(root, "Include /etc/proftpd/conf.d/\n",
         "<VirtualHost 192.0.2.5>\n  Include /etc/proftpd/conf.d/\n</VirtualHost>\n")
    assert judge.conflicts(read(root), FRAGMENT_PATH, WANT) == [
        f"ProFTPd reads {FRAGMENT_PATH} inside <VirtualHost 192.0.2.5> (an Include there), so "
        "its PassivePorts does not apply to the main server; include it at the top level"]


def test_no_proftpd_conf(tmp_path):
    cfg = read(host(tmp_path, froxlor=False))
    assert not cfg.proftpd.found
    [conflict] = judge.conflicts(cfg, FRAGMENT_PATH, WANT)
    assert conflict.startswith(f"{CONF} not found")


# --- pure-ftpd and which daemon -----------------------------------------------------


def test_pure_ftpd_files_and_running(tmp_path):
    root = host(tmp_path, {"/etc/pure-ftpd/conf/PassivePortRange": "50000 50100\n",
                           "/etc/pure-ftpd/conf/ForcePassiveIP": "192.0.2.1",  # no newline
                           "/run/pure-ftpd/pure-ftpd.pid": f"{os.getpid()}\n",
                           "/run/proftpd.pid": "999999999\n"},
                froxlor=False, bins=("pure-ftpd-mysql", "pure-ftpd-wrapper"))
    cfg = read(root)
    assert cfg.installed == {"pureftpd": "/usr/sbin/pure-ftpd-mysql"}
    assert cfg.running == {"pureftpd": os.getpid()}  # the proftpd pid is not alive
    assert cfg.pureftpd == PureFtpdConfig((50000, 50100), "50000 50100", "192.0.2.1")
    assert choose_daemon(cfg, "auto") == ("pureftpd", None)


def test_pure_ftpd_without_passive_files(tmp_path):
    cfg = read(host(tmp_path, froxlor=False, bins=("pure-ftpd",)))
    assert cfg.pureftpd == PureFtpdConfig()


@pytest.mark.parametrize("bins, wanted, daemon, error", [
    (("proftpd",), "auto", "proftpd", None),
    (("pure-ftpd-wrapper",), "auto", "pureftpd", None),
    ((), "auto", None, "the ftp role needs an FTP server, but neither ProFTPd nor pure-ftpd is "
                       "installed on this host; install the one froxlor is configured for, this "
                       "deploy does not install an FTP server unasked"),
    (("proftpd", "pure-ftpd-mysql"), "auto", None,
     "both ProFTPd (/usr/sbin/proftpd, not running) and pure-ftpd (/usr/sbin/pure-ftpd-mysql, "
     "not running) are installed on this host; set ftp_daemon to 'proftpd' or 'pureftpd' in "
     "its data to say which one the ftp role manages"),
    (("proftpd", "pure-ftpd-mysql"), "pureftpd", "pureftpd", None),
    (("proftpd",), "pureftpd", None,
     "ftp_daemon is 'pureftpd', but pure-ftpd is not installed on this host (froxlor uses "
     "pure-ftpd-mysql); install it first, this deploy does not install an FTP server unasked"),
    (("proftpd",), "vsftpd", None, "ftp_daemon must be 'auto', 'proftpd' or 'pureftpd', not 'vsftpd'"),
])
def test_choose_daemon(tmp_path, bins, wanted, daemon, error):
    cfg = read(host(tmp_path, froxlor=False, bins=bins))
    assert choose_daemon(cfg, wanted) == (daemon, error)


def test_config_left_behind_does_not_make_a_daemon_installed(tmp_path):
    # apt remove keeps /etc/proftpd: only the binary counts.
    cfg = read(host(tmp_path, bins=()))
    assert cfg.installed == {}
    assert cfg.proftpd.found


# --- the script itself ----------------------------------------------------------------


def test_dump_command_runs_inside_a_joined_fact_command(tmp_path):
    root = host(tmp_path, {"/etc/proftpd/conf.d/10 a.conf": "PassivePorts 40000 40100\n"})
    command = "; ".join(["echo ':::froxlor-fleet:ftp'", dump_command(), "echo after"])
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True,
                         env={**os.environ, "FROXLOR_FLEET_ROOT": str(root)}).stdout.splitlines()
    assert out[0] == ":::froxlor-fleet:ftp" and out[-1] == "after"
    assert out[1:-1] == dump(root)
    [conflict] = judge.conflicts(parse_dump(out), FRAGMENT_PATH, WANT)
    assert conflict.startswith("/etc/proftpd/conf.d/10 a.conf:1 sets PassivePorts 40000 40100")


def test_dump_frames_files_without_final_newline(tmp_path):
    """Every file the dump reads (ProFTPd's, each Include's, pure-ftpd's) without its
    final newline: the same records, each on its own line, and what follows the dump in
    the fact command (another section's marker) still starts a line (issue 22)."""
    files = {"/etc/proftpd/conf.d/10 a.conf": "<IfModule mod_tls.c>\nPassivePorts 40000 40100\n</IfModule>\n",
             "/etc/pure-ftpd/conf/PassivePortRange": "50000 50100\n",
             "/etc/pure-ftpd/conf/ForcePassiveIP": "192.0.2.1\n"}
    bins = ("proftpd", "pure-ftpd")
    with_eol = host(tmp_path / "eol", files, bins=bins)
    without = host(tmp_path / "noeol", files, bins=bins)
    stripped = 0
    for path in without.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.read_bytes().endswith(b"\n"):
            path.write_bytes(path.read_bytes().rstrip(b"\n"))
            stripped += 1
    assert stripped >= 8
    command = "; ".join([dump_command(), "echo ':::froxlor-fleet:after'"])
    for shell in ("sh", *(["dash"] if shutil.which("dash") else [])):
        outs = [subprocess.run([shell, "-c", command], capture_output=True, text=True, check=True,
                               env={**os.environ, "FROXLOR_FLEET_ROOT": str(root)}).stdout
                for root in (with_eol, without)]
        assert outs[0].replace(str(with_eol), "") == outs[1].replace(str(without), "")
        assert outs[1].endswith("\n:::froxlor-fleet:after\n")
    cfg = parse_dump(outs[1].splitlines()[:-1])
    assert cfg.installed == {"proftpd": "/usr/sbin/proftpd", "pureftpd": "/usr/sbin/pure-ftpd"}
    assert cfg.pureftpd == PureFtpdConfig((50000, 50100), "50000 50100", "192.0.2.1")
    assert cfg.proftpd.found and [s.value for s in cfg.proftpd.occurrences
                                  if s.directive == "PassivePorts"] == ["40000 40100"]


def test_dump_on_an_empty_host(tmp_path):
    (tmp_path / "empty").mkdir()
    assert dump(tmp_path / "empty") == ["@conf /etc/proftpd/proftpd.conf", "@root /etc/proftpd -"]
    cfg = parse_dump(dump(tmp_path / "empty"))
    assert cfg.installed == {} and not cfg.proftpd.found


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash not installed")
def test_dump_under_dash(tmp_path):
    root = host(tmp_path)
    out = subprocess.run(["dash", str(SCRIPT), str(root)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == dump(root)


@pytest.mark.skipif(shutil.which("shellcheck") is None and os.environ.get("CI") != "true",
                    reason="shellcheck not installed (required in CI)")
def test_dump_script_is_shellcheck_clean():
    subprocess.run(["shellcheck", "-s", "sh", str(SCRIPT)], check=True)


# --- the replay against the real proftpd ---------------------------------------------


def _real_tree(base: Path) -> Path:
    """A config exercising include order and scoping, with absolute paths under ``base``
    (the real binary reads them where they are). Each file that sets something sets a
    MasqueradeAddress and a PassivePorts, so proftpd's "masquerading as" lines show
    which file won the first-wins lookup PassivePorts shares (find_config)."""
    etc, extra = base / "etc" / "proftpd", base / "srv"
    files = {
        "etc/proftpd/proftpd.conf": f"""
ServerName "t"
ServerType standalone
DefaultServer on
DefaultAddress 127.0.0.1
UseIPv6 off
Port 2121
User nobody
Group nogroup
PidFile {base}/proftpd.pid
ScoreboardFile {base}/proftpd.scoreboard
DelayTable none
WtmpLog off
TraceLog {base}/trace.log
Trace config:3
<Global>
  MasqueradeAddress 192.0.2.100
  PassivePorts 40100 40199
</Global>
<VirtualHost 127.0.0.2>
  Port 2122
  MasqueradeAddress 192.0.2.102
  PassivePorts 40200 40299
</VirtualHost>
<VirtualHost 127.0.0.3>
  Port 2123
</VirtualHost>
Include {etc}/conf.d/
IncludeOptions IgnoreTempFiles
Include {extra}/*.conf
Include {etc}/conf.d/
""",
        "etc/proftpd/conf.d/.dot": "masqueradeaddress 192.0.2.1\nPassivePorts 40001 40002\n",
        "etc/proftpd/conf.d/00.conf~": "MasqueradeAddress 192.0.2.2\nPassivePorts 40003 40004\n",
        "etc/proftpd/conf.d/Zz.conf": "MasqueradeAddress 192.0.2.3\nPassivePorts 40005 40006\n",
        "etc/proftpd/conf.d/_x.conf.frx.bak": "MaxInstances 20\n",
        "etc/proftpd/conf.d/sub/inner.conf": "MasqueradeAddress 192.0.2.4\n",
        "srv/b.conf": "MaxInstances 21\n",
        "srv/a.conf": "MaxInstances 22\n",
        "srv/.c.conf": "MaxInstances 23\n",
        "srv/a.conf~": "MaxInstances 24\n",
    }
    write(base, files)
    return etc


@NEEDS_PROFTPD
def test_replay_matches_real_proftpd_parse(tmp_path):
    base = tmp_path / "real"
    etc = _real_tree(base)
    proftpd = shutil.which("proftpd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    run = subprocess.run([proftpd, "-t", "-c", str(etc / "proftpd.conf")],
                         capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "fatal:" not in output, output

    # The same tree through the host-side script (root /, CONFDIR the temp one).
    cfg = parse_dump(dump(Path("/"), str(etc)))
    trace = (base / "trace.log").read_text()
    real_order = [p for p in re.findall(r"parsing '([^']+)' configuration", trace)
                  if not os.path.isdir(p)]  # ProFTPd tries subdirectories, EISDIR
    assert real_order == cfg.proftpd.parse_order[1:]
    # Dot-files and backups in a directory Include; not after IgnoreTempFiles '~'.
    assert real_order == [f"{etc}/conf.d/.dot", f"{etc}/conf.d/00.conf~",
                          f"{etc}/conf.d/Zz.conf", f"{etc}/conf.d/_x.conf.frx.bak",
                          f"{base}/srv/a.conf", f"{base}/srv/b.conf",
                          f"{etc}/conf.d/.dot", f"{etc}/conf.d/Zz.conf",
                          f"{etc}/conf.d/_x.conf.frx.bak"]

    # First wins, server's own before <Global> (which stands first in the file), a
    # vhost without its own value gets <Global>'s, never the main server's.
    real = dict(re.findall(r"(\d+\.\d+\.\d+\.\d+):\d+ masquerading as (\S+)", output))
    mine = {"127.0.0.1": cfg.proftpd.masquerade.value,
            "127.0.0.2": cfg.proftpd.vhosts[0].masquerade.value,
            "127.0.0.3": cfg.proftpd.vhosts[1].masquerade.value}
    assert real == mine == {"127.0.0.1": "192.0.2.1", "127.0.0.2": "192.0.2.102",
                            "127.0.0.3": "192.0.2.100"}
    # PassivePorts: the same lookup, so the same files win.
    assert cfg.proftpd.passive_ports.origin == f"{etc}/conf.d/.dot:2"
    assert cfg.proftpd.vhosts[0].passive_ports.value == "40200 40299"
    assert cfg.proftpd.vhosts[1].passive_ports.value == "40100 40199"


@NEEDS_PROFTPD
def test_real_proftpd_accepts_a_second_passive_ports(tmp_path):
    # Why the replay is needed at all: a shadowed fragment passes proftpd -t.
    base = tmp_path / "real"
    etc = _real_tree(base)
    write(base, {"etc/proftpd/conf.d/froxlor-fleet-passive-ports.conf": "PassivePorts 50000 50100\n"})
    proftpd = shutil.which("proftpd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    run = subprocess.run([proftpd, "-t", "-c", str(etc / "proftpd.conf")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "fatal:" not in run.stdout + run.stderr
    cfg = parse_dump(dump(Path("/"), str(etc)))
    frag = f"{etc}/conf.d/froxlor-fleet-passive-ports.conf"
    [first, *_] = judge.check(cfg, frag, WANT).conflicts
    assert first.startswith(f"{etc}/conf.d/.dot:2 sets PassivePorts 40001 40002, which ProFTPd "
                            "uses instead of this deploy's 50000 50100")
