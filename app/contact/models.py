"""The contact channel's records."""

CONTACT_MODELS = []
