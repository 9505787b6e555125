# froxlor's name servers: 53/tcp and 53/udp.
froxlor_roles = ["dns"]
