"""bench/topology.py: each topology is judged against the ceiling of its own round and size,
and the one-buffer prototype is added to the package without disturbing what is in it."""

import io
import os
import zipfile

from bench.topology import ONE_BUFFER_HANDLER, package_with_prototype, with_ratios


def burst(variant, round_, size, per_second, emulator_ms, concurrency=None):
    result = {"variant": variant, "round": round_, "size": size}
    result |= {"events_per_second": per_second, "cpu_ms_per_event": {"ministack": emulator_ms}}
    return result | ({"concurrency": concurrency} if concurrency else {})


def test_each_burst_is_divided_by_the_ceiling_of_its_own_round_and_size():
    rows = with_ratios(
        [
            burst("ceiling", 0, 6000, 800.0, 1.2),
            burst("ceiling", 0, 2000, 1300.0, 0.7),
            burst("per_destination", 0, 6000, 300.0, 2.4, 3),
            burst("one_buffer", 0, 2000, 650.0, 0.8, 9),
            burst("ceiling", 1, 6000, 1000.0, 1.0),
            burst("one_buffer", 1, 6000, 800.0, 0.9, 9),
        ]
    )
    assert [(r["variant"], r["size"], r["ratio"]) for r in rows] == [
        ("per_destination", 6000, 0.38),
        ("one_buffer", 2000, 0.5),
        ("one_buffer", 6000, 0.8),
    ]
    assert rows[0]["emulator_ms_per_event"] == 2.4
    assert rows[0]["ceiling_emulator_ms_per_event"] == 1.2


def test_a_burst_without_a_ceiling_of_its_own_is_not_given_a_ratio():
    rows = with_ratios(
        [burst("ceiling", 0, 6000, 0.0, 1.0), burst("one_buffer", 0, 6000, 500, 1, 9)]
    )
    assert rows == []
    assert with_ratios([burst("one_buffer", 1, 2000, 500.0, 1.0, 9)]) == []


def test_the_prototype_rides_in_a_copy_of_the_newest_package(tmp_path):
    older, newer = tmp_path / "lambda-old.zip", tmp_path / "sub" / "lambda-new.zip"
    newer.parent.mkdir()
    for path, body in ((older, b"old"), (newer, b"new")):
        with zipfile.ZipFile(path, "w") as package:
            package.writestr("lambdas/handler.py", body)
    os.utime(older, (1, 1))
    with zipfile.ZipFile(io.BytesIO(package_with_prototype(tmp_path))) as package:
        assert package.read("lambdas/handler.py") == b"new"
        assert package.read("topology_one_buffer.py").decode() == ONE_BUFFER_HANDLER.read_text()
