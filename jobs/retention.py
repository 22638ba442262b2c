"""Retention tasks: the purges driven by the retention table."""
