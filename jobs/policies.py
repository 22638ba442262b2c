"""Policy tasks."""
