"""Live chat: sites, visitors, conversations, messages, and the events streamed to both sides."""
