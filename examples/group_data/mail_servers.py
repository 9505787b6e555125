# froxlor's mail servers. "mail" = smtp (25, 465, 587) + imap (143, 993); pop3: 110, 995.
froxlor_roles = ["mail", "pop3"]
