# froxlor's FTP servers: 21/tcp and the passive range, which is also written to the FTP
# daemon's config (ProFTPd's conf.d fragment, or pure-ftpd's PassivePortRange), so UFW
# and the daemon always agree. The daemon must be installed (froxlor sets it up).
froxlor_roles = ["ftp"]
ftp_passive_ports = (49152, 65534)  # (low, high) within 1024-65535
# ftp_masquerade_address = "203.0.113.10"  # the public address, for hosts behind NAT
