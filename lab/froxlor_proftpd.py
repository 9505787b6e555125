"""ProFTPd on lab hosts configured the way froxlor configures it.

Written from froxlor's own service templates (froxlor/Froxlor ``lib/configfiles/
bookworm.xml``, bullseye/trixie alike; see ``shared/notes/froxlor-hosts.md``), not
copied: what matters for this project is the *shape*:

- ``proftpd.conf`` as froxlor writes it: ``PassivePorts``/``MasqueradeAddress`` only in
  comments, ``Include /etc/proftpd/tls.conf`` and, last, ``Include /etc/proftpd/conf.d/``
  (so every conf.d file is parsed after proftpd.conf);
- ``tls.conf``: ``TLSEngine on``, ``TLSRequired on``, TLS 1.2/1.3, explicit FTPS on 21
  (the firewall can't read an encrypted PASV reply: only a fixed open range works);
- ``conf.d/99-froxlor-ratelimit.conf``: froxlor's whitelist class, MaxLoginAttempts and
  mod_ban rules;
- ``modules.conf``: the package's, with ``mod_tls`` loaded (froxlor's loads it too).

Lab-only differences, each for a reason:
- no ``Include /etc/proftpd/sql.conf``: froxlor's FTP users live in MySQL, the lab has
  none; instead ``conf.d/lab-anonymous.conf`` offers a read-only anonymous login (FTPS
  is still required for it);
- certificates live in ``/etc/proftpd/ssl/`` (froxlor: /etc/ssl/...), because namespace
  lab hosts share this machine's /etc/ssl and must not write there;
- the control side's address joins froxlor's ``whitelist`` class (froxlor: 127.0.0.1
  only): the tests connect more often than ``BanOnEvent ClientConnectRate 10/00:00:02``
  allows and would otherwise be banned for two hours.

On Debian 13 ``mod_tls`` comes from the ``proftpd-mod-crypto`` package.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SSL_DIR = "/etc/proftpd/ssl"


def proftpd_conf(server_name: str) -> str:
    return f"""\
# /etc/proftpd/proftpd.conf -- froxlor-shaped (lab/froxlor_proftpd.py)
Include /etc/proftpd/modules.conf
UseIPv6\t\t\t\ton
<IfModule mod_ident.c>
  IdentLookups\t\t\toff
</IfModule>
ServerName\t\t\t"{server_name} FTP Server"
ServerType\t\t\tstandalone
DeferWelcome\t\t\toff
DefaultServer\t\t\ton
ShowSymlinks\t\t\ton
TimeoutNoTransfer\t\t600
TimeoutStalled\t\t\t600
TimeoutIdle\t\t\t1200
DisplayLogin\t\t\twelcome.msg
DisplayChdir\t\t\t.message true
ListOptions\t\t\t"-l"
DenyFilter\t\t\t\\*.*/
Port\t\t\t\t21
# In some cases you have to specify passive ports range to by-pass
# firewall limitations. Ephemeral ports can be used for that, but
# feel free to use a more narrow range.
# PassivePorts                  49152 65534
# If your host was NATted, this option is useful in order to
# allow passive tranfers to work.
# MasqueradeAddress             1.2.3.4
<IfModule mod_dynmasq.c>
</IfModule>
MaxInstances\t\t\t30
User\t\t\t\tproftpd
Group\t\t\t\tnogroup
Umask\t\t\t\t022  022
AllowOverwrite\t\t\ton
TransferLog /var/log/proftpd/xferlog
SystemLog   /var/log/proftpd/proftpd.log
<IfModule mod_quotatab.c>
QuotaEngine on
</IfModule>
<IfModule mod_ratio.c>
Ratios off
</IfModule>
<IfModule mod_delay.c>
DelayEngine on
</IfModule>
<IfModule mod_ctrls.c>
ControlsEngine        off
ControlsMaxClients    2
ControlsLog           /var/log/proftpd/controls.log
ControlsInterval      5
ControlsSocket        /var/run/proftpd/proftpd.sock
</IfModule>
<IfModule mod_ctrls_admin.c>
AdminControlsEngine off
</IfModule>
# froxlor: Include /etc/proftpd/sql.conf (its users live in MySQL; the lab has none)
Include /etc/proftpd/tls.conf
Include /etc/proftpd/conf.d/
"""


TLS_CONF = f"""\
<IfModule mod_tls.c>
TLSEngine                               on
TLSLog                                  /var/log/proftpd/tls.log
TLSProtocol                             TLSv1.2 TLSv1.3
TLSRSACertificateFile                   {SSL_DIR}/proftpd.crt
TLSRSACertificateKeyFile                {SSL_DIR}/proftpd.key
TLSECCertificateFile                    {SSL_DIR}/proftpd_ec.crt
TLSECCertificateKeyFile                 {SSL_DIR}/proftpd_ec.key
TLSOptions                              NoSessionReuseRequired
TLSVerifyClient                         off
TLSRequired                             on
</IfModule>
"""


def ratelimit_conf(whitelist: list[str]) -> str:
    return f"""\
<Class whitelist>
From {" ".join(["127.0.0.1", *whitelist])}
</Class>

MaxLoginAttempts 3
<IfModule mod_ban.c>
 <IfClass whitelist>
  BanEngine off
 </IfClass>
 <IfClass !whitelist>
  BanEngine on
 </IfClass>
BanLog /var/log/proftpd/ban.log
BanTable /etc/proftpd/ban.tab
BanMessage "User %u was banned."
BanOnEvent ClientConnectRate 10/00:00:02 02:00:00 "Stop connecting frequently"
BanOnEvent MaxLoginAttempts 3/00:30:00 12:00:00
BanOnEvent AnonRejectPasswords 1/01:00:00 99:99:99
BanControlsACLs all allow user root
</IfModule>

<IfClass whitelist>
BanEngine off
DelayEngine off
</IfClass>
"""


ANONYMOUS_CONF = """\
# froxlor-fleet lab only: anonymous read-only login for the end-to-end tests (FTPS is
# still required: TLSRequired on applies to it as to froxlor's MySQL users)
<Anonymous /srv/ftp>
  User ftp
  Group nogroup
  UserAlias anonymous ftp
  RequireValidShell off
  <Limit WRITE>
    DenyAll
  </Limit>
</Anonymous>
"""


def modules_conf(stock: str) -> str:
    """The package's modules.conf with mod_tls loaded, as froxlor's is."""
    lines = ["LoadModule mod_tls.c" if line.strip() == "#LoadModule mod_tls.c" else line
             for line in stock.splitlines()]
    if "LoadModule mod_tls.c" not in lines:
        lines.append("LoadModule mod_tls.c")
    return "\n".join(lines) + "\n"


def make_certificates(ssl_dir: Path, server_name: str) -> None:
    """A self-signed RSA and EC certificate pair, made at ``lab up`` (never committed)."""
    ssl_dir.mkdir(parents=True, exist_ok=True)
    subject = f"/CN={server_name}"
    for stem, newkey in (("proftpd", ["-newkey", "rsa:2048"]),
                         ("proftpd_ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"])):
        if (ssl_dir / f"{stem}.crt").exists():
            continue
        subprocess.run(["openssl", "req", "-new", "-x509", "-nodes", "-days", "3650", *newkey,
                        "-subj", subject, "-keyout", str(ssl_dir / f"{stem}.key"),
                        "-out", str(ssl_dir / f"{stem}.crt")],
                       check=True, capture_output=True)
        (ssl_dir / f"{stem}.key").chmod(0o600)


def write_config(etc_proftpd: Path, server_name: str, whitelist: list[str]) -> None:
    """Make ``etc_proftpd`` (a host's /etc/proftpd, holding the package's modules.conf)
    froxlor-shaped, with certificates in its ``ssl/`` (= ``SSL_DIR`` on the host)."""
    (etc_proftpd / "conf.d").mkdir(parents=True, exist_ok=True)
    (etc_proftpd / "proftpd.conf").write_text(proftpd_conf(server_name))
    (etc_proftpd / "proftpd.conf").chmod(0o600)
    (etc_proftpd / "modules.conf").write_text(modules_conf((etc_proftpd / "modules.conf").read_text()))
    (etc_proftpd / "tls.conf").write_text(TLS_CONF)
    (etc_proftpd / "conf.d/99-froxlor-ratelimit.conf").write_text(ratelimit_conf(whitelist))
    (etc_proftpd / "conf.d/lab-anonymous.conf").write_text(ANONYMOUS_CONF)
    make_certificates(etc_proftpd / "ssl", server_name)
