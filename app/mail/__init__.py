"""E-mail: the outbox, its delivery over SMTP and the dev-only outbox page."""
