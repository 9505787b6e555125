# froxlor's name servers: 53/udp, and 53/tcp (zone transfers) from dns_transfer_sources.
froxlor_roles = ["dns"]
# dns_transfer_sources = ["@dns_servers"]  # 53/tcp from these name servers only (default: anywhere)
