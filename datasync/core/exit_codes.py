"""Exit codes of datasync's commands (`datasync` and `datasync-consumer`): one table.

Scripts and supervisors branch on these, so they never change meaning. 2 is argparse's own
code for a usage error (unknown command or option), so nothing else uses it.

| code | meaning |
|---|---|
| 0 | done (a consumer: stopped by SIGTERM/SIGINT after the batch in hand) |
| 1 | did not succeed: a redrive left messages behind, a replay failed, a store is missing |
| 2 | usage error (argparse) |
| 3 | absent: no such record, or the user was erased, or the contact is not subscribed |
| 4 | AWS (or the emulator) cannot be reached, or a store's database cannot (the CLI) |
| 5 | misconfigured: a setting is missing or wrong (the message says which to set) |
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
ABSENT = 3
UNAVAILABLE = 4
CONFIG = 5
