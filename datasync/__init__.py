"""datasync: shared contract and core used by the API, the Lambdas and the consumers."""

__version__ = "0.1.0"
