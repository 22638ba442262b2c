"""Usage insight's records."""

INSIGHT_MODELS = []
