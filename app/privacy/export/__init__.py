"""Access and portability: exports of a workspace or of one person's data."""
