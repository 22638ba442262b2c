"""Public pages: home, privacy, health check."""
