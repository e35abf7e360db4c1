"""`make bench`: the measuring instrument (run as ``python -m bench``, in a venv of its own).

It drives the checkout it measures only the way a user does - `datasync up`, HTTP to the API,
the AWS APIs of the emulator, the stores' ``applied_events`` tables and /proc - so the same tool
measures an older checkout too (``--repo``; BENCH_REPO): that checkout's code is never imported.
From its own checkout it imports only what its venv can load: the local layout
(datasync/local_layout.py), the dev stack's process and launch helpers (devstack/processes.py,
devstack/launch.py), and the core's boto3 client factory, queue depth and backoff
(tests/unit/test_layering.py checks the list). Pure parts (schedule, statistics, cost model,
call classification, result shape) use only the standard library and are unit-tested.
"""
