"""Contact channel tasks."""
