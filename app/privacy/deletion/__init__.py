"""Deletion of a workspace or an account: asked for with the password, carried out after a
grace period by the worker, in batches."""
