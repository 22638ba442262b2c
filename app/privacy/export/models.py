"""Export records."""

EXPORT_MODELS = []
