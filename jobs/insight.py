"""Usage insight tasks."""
