froxlor_roles = ["mysql"]
mysql_allowed_sources = ["192.0.2.0/24"]  # the web servers' network; never the world
