"""Lumnar staff's area: set up a customer's automations, every look written to their access log."""
