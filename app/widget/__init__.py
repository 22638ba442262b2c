"""The chat widget: the loader script customers embed, and the iframe visitors chat in."""
