"""Data-rights tasks."""
