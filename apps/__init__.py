"""Runtimes (top floor): the API, the consumers and the CLI. None imports another."""
