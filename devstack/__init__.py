"""The local dev stack behind `make run` (`datasync up`): emulator, Terraform, supervisor.

A distribution of its own (pyproject.toml here), installed editable into a checkout's .venv by
`make install` and copied into no image. It adds `up` and `package-lambda` to the `datasync`
command through an entry point. Importing this package imports nothing: the benchmark's venv
imports its standard-library modules (processes, launch) without the project's dependencies.
"""
