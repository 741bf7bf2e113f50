"""The bench's CPU readings tell a worker's main thread apart from its other threads."""
from __future__ import annotations

import os
import threading
import time

from bench.measure import cpu_seconds, main_thread_cpu_seconds


def test_main_thread_cpu_leaves_out_what_other_threads_spend():
    pid = os.getpid()
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    process_before, main_before = cpu_seconds(pid), main_thread_cpu_seconds(pid)
    spinner.start()
    time.sleep(0.6)  # the main thread sleeps while the other one spins
    stop.set()
    spinner.join()
    assert cpu_seconds(pid) - process_before >= 0.3
    assert main_thread_cpu_seconds(pid) - main_before < 0.1
    assert main_thread_cpu_seconds(pid) <= cpu_seconds(pid)
