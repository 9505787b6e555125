froxlor_roles = ["mail", "pop3"]  # "mail" = smtp + imap
