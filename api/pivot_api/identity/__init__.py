"""Who the caller is: the key's name and scope (so a dashboard shows only what it may do)."""
