froxlor_roles = ["web"]
