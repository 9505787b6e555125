froxlor_roles = ["ftp"]
ftp_passive_ports = (49152, 65534)
