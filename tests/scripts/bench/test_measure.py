import os
import subprocess
import sys
import time

import pytest

from scripts.bench.measure import broker_cpu_seconds, together
from scripts.bench.results import Step


def test_the_brokers_cpu_is_its_process_user_and_system_time(tmp_path):
    (tmp_path / "broker.pid").write_text(f"{os.getpid()}\n")  # as scripts/kafka/broker writes it
    # This process has used a second or so by now; /proc counts in clock ticks (10 ms).
    measured = broker_cpu_seconds({"KAFKA_DATA_DIR": str(tmp_path)})
    assert measured == pytest.approx(time.process_time(), abs=0.05)


def test_three_nodes_are_the_sum_of_theirs(tmp_path):
    for node in (1, 2):
        (tmp_path / f"node-{node}").mkdir()
        (tmp_path / f"node-{node}" / "broker.pid").write_text(str(os.getpid()))
    measured = broker_cpu_seconds({"KAFKA_DATA_DIR": str(tmp_path)})
    assert measured == pytest.approx(2 * time.process_time(), abs=0.1)


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields(tmp_path):
    # /proc/<pid>/stat's second field is the name in parentheses, which may hold both.
    spin = (
        "import sys, time\n"
        "open('/proc/self/comm', 'w').write('a) b (c')\n"
        "end = time.process_time() + 0.15\n"
        "while time.process_time() < end: pass\n"
        "print(time.process_time(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    with subprocess.Popen([sys.executable, "-c", spin], **pipes) as child:
        used = float(child.stdout.readline())
        (tmp_path / "broker.pid").write_text(str(child.pid))
        measured = broker_cpu_seconds({"KAFKA_DATA_DIR": str(tmp_path)})
        child.stdin.close()
    assert measured == pytest.approx(used, abs=0.05)


def step(records: int, started: float, ended: float, cpu: float, rss: float) -> Step:
    return Step(
        seconds=ended - started, records=records, written=records - 10, peak_rss_mb=rss,
        started=started, ended=ended, cpu_seconds=cpu,
    )


def test_workers_together_span_the_first_start_to_the_last_end_and_add_up_their_records_and_cpu():
    steps = [step(300, 100.0, 104.0, 3.5, 110.0), step(200, 100.5, 105.0, 2.0, 120.0)]
    assert together(steps) == Step(
        seconds=5.0, records=500, written=480, peak_rss_mb=120.0, started=100.0, ended=105.0, cpu_seconds=5.5,
    )
