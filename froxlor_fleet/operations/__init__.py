"""The pyinfra operations, and what they decide and run: a host's plan (``model``) and
its state (``facts``) in, each host's changes out as one transaction of the host program.

Operations (``ufw.rules_and_policies``, ``ftp.ready_for_ftp``,
``ftp.passive_ports_fragment``, ``ftp.passive_port_range``):

- ``ufw``: UFW's rules, policies, logging and enabled state (lockout guard,
  commit-confirm);
- ``ftp``: the FTP daemon ready for the ftp role, and its passive range (ProFTPd's
  fragment, pure-ftpd's files).

What they share:

- ``ftpplan``: the FTP side of a host's run, decided once (daemon, what it should
  have, the host program's FTP part, the range switch);
- ``passive_switch``: a passive-range change, old range open until the daemon switched;
- ``tenants``: the firewall's other tenants (fail2ban, nftables, iptables-persistent,
  Docker) and what each means for UFW;
- ``steps``: when to report, failing one host, which operation carries the transaction;
- ``hostprogram``: the host program, control side: placed once per version, one
  transaction a host;
- ``confirm``: commit-confirm, control side: a new SSH connection confirms.
"""
