"""Shared core (middle floor): transforms, stores, bus publisher, queue helpers.

Modules here import from datasync.contract and the standard library or their own client
libraries, never from apps/ or lambdas/. Nothing does I/O at import time.
"""
