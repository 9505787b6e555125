"""Hand-edited files without a final newline, on the lab fleet (issue 22).

The state read prints files between marker lines. A file whose last byte is not a
newline must not glue the next marker onto its last line: a fragment without one lost
the ftp section ("neither ProFTPd nor pure-ftpd is installed", on every run: never
repaired); a ufw.conf without one lost /etc/default/ufw (a real ACCEPT read as deny,
so never fixed, and a phantom logging change on every run).

Lab fleet (tests/lab/conftest.py): lab-h1, lab-h2 web+ftp; lab-h3 mail (+pop3);
lab-h4 dns; lab-h5 db.
"""

from __future__ import annotations

from froxlor_fleet.model.catalog import LOADED_MARKER
from labtools import EXPECTED, FRAGMENT, assert_no_change

MISSING_FTP = "neither ProFTPd nor pure-ftpd is installed"
UFW_CONF, DEFAULT_UFW = "/etc/ufw/ufw.conf", "/etc/default/ufw"


def ends_in_newline(lab, name: str, path: str) -> bool:
    return lab.sh(name, f"tail -c 1 {path} | wc -l").stdout.strip() == "1"


def drop_final_newline(lab, name: str, path: str) -> None:
    """As an editor that does not add one would leave the file (idempotent)."""
    if ends_in_newline(lab, name, path):
        lab.sh(name, f"truncate -s -1 {path}")
    assert not ends_in_newline(lab, name, path), path


def converge(lab) -> None:
    res = lab.deploy("-y")
    assert res.returncode == 0, res.out
    for name, host in lab.hosts.items():
        assert sorted(lab.show_added(name)) == sorted(EXPECTED[host["kind"]]), name


def test_01_newline_less_fragment_and_ufw_conf_are_read_right_and_repaired(lab) -> None:
    converge(lab)
    web = lab.by_kind("web")[0]
    wanted = lab.sh(web, f"cat {FRAGMENT}").stdout
    assert wanted.endswith("\n") and "PassivePorts" in wanted
    try:
        # A real ACCEPT incoming policy, then every file the state read prints by hand
        # edited without its final newline (the loaded marker too).
        lab.sh(web, "ufw default allow incoming >/dev/null")
        for path in (FRAGMENT, LOADED_MARKER, UFW_CONF, DEFAULT_UFW):
            drop_final_newline(lab, web, path)

        dry = lab.deploy("--dry", "--diff", "--limit", web)
        assert dry.returncode == 0, dry.out
        assert MISSING_FTP not in dry.out
        # Not byte-identical to the wanted fragment: rewritten.
        assert f"[{web}] Will modify {FRAGMENT}" in dry.out
        # /etc/default/ufw read after a newline-less ufw.conf: ACCEPT is allow.
        assert "~ default incoming: allow -> deny" in dry.out
        assert "~ logging:" not in dry.out  # LOGLEVEL read without the next marker

        res = lab.deploy("-y", "--limit", web)
        assert res.returncode == 0, res.out
        assert MISSING_FTP not in res.out
        assert lab.sh(web, f"cat {FRAGMENT}").stdout == wanted
        status = lab.sh(web, "ufw status verbose").stdout
        assert "Default: deny (incoming), allow (outgoing)" in status
        assert "Logging: on (low)" in status

        # Still hand-edited ufw files: the next run reads them right and changes nothing.
        for path in (UFW_CONF, DEFAULT_UFW):
            drop_final_newline(lab, web, path)
        before = lab.state_files()
        again = lab.deploy("-y")
        assert_no_change(again)
        assert lab.state_files() == before
    finally:
        for path in (UFW_CONF, DEFAULT_UFW):
            if not ends_in_newline(lab, web, path):
                lab.sh(web, f"echo >> {path}")
