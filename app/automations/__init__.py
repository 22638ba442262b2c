"""Tailored automations: the credential vault, flows, triggers and runs."""
