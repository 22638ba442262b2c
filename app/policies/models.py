"""The policies' records."""

POLICY_MODELS = []
