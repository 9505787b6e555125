# froxlor's web servers: 80 and 443/tcp.
froxlor_roles = ["web"]
# web_http3 = True  # also 443/udp, for HTTP/3 (froxlor's nginx "http3" setting)
