"""The `datasync` command: local stack, store lookups, status, packaging."""
