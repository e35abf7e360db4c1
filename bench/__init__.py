"""`make bench`: the measuring instrument of issue 8 (run as ``python -m bench``).

Self-contained on purpose: it imports nothing from the checkout it measures (apps/, datasync/,
lambdas/), only drives it the way a user does - `datasync up`, HTTP to the API, the AWS APIs of
the emulator, the stores' ``applied_events`` tables and /proc - so the same tool measures an
older checkout too (``--repo``). Pure parts (schedule, statistics, cost model, call
classification, result shape) use only the standard library and are unit-tested.
"""
