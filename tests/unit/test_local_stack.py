import json
import subprocess
import time

from apps.cli.local_stack import _group_alive, stop_leftovers
from tests.pipeline import wait_until


def test_a_run_after_a_hard_kill_stops_what_the_killed_run_left(tmp_path, capsys):
    # An orphaned process group (a parent with a child), like the ones a killed run leaves.
    launcher = "setsid sh -c 'sleep 60 & sleep 60' > /dev/null 2>&1 & echo $!"
    group = int(
        subprocess.run(["sh", "-c", launcher], capture_output=True, text=True, check=True).stdout
    )
    wait_until(lambda: _group_alive(group), timeout=5, what="the leftover group")
    pid_file = tmp_path / "processes.json"
    pid_file.write_text(json.dumps({"process_groups": [group, 999999]}))

    started = time.monotonic()
    stop_leftovers(pid_file)

    assert not _group_alive(group)
    assert time.monotonic() - started < 5  # stopped by SIGTERM, no need for the SIGKILL round
    assert not pid_file.exists()
    assert "left by an earlier run" in capsys.readouterr().out


def test_nothing_to_do_without_a_process_file(tmp_path):
    stop_leftovers(tmp_path / "missing.json")
