froxlor_roles = ["dns"]
