"""Restriction and objection records."""

RESTRICTION_MODELS = []
