# froxlor's database servers: 3306/tcp, only from these sources (required with mysql).
froxlor_roles = ["mysql"]
mysql_allowed_sources = ["192.0.2.0/24"]  # the web servers' network; never the world
# mysql_allowed_sources = ["@web_servers"]  # or: the web servers' own addresses (README)
