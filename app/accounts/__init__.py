"""Accounts and teams: sign-up, log-in, sessions, workspaces and their members."""
