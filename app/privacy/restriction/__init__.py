"""Restriction of processing, objection to e-mail, and retention as one table of truth."""
