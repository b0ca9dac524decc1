"""A notebook's insert prints Pixeltable-like output (a progress bar, one summary line), not Dagster's event
stream; the events still go to the instance, and PXT_VERBOSE=1 brings them back to the console."""

from __future__ import annotations

import re

import pxt_assets as pxt
from pxt_assets_tests.test_cli_and_ui import pxt_env  # noqa: F401 - a private home for the demo command


def _table():
    t = pxt.MediaTable("console/t", {"img": pxt.Image})
    t.add_computed_column(rot=t.img.rotate(90))
    return t


def test_an_insert_prints_a_summary_line_and_no_dagster_events(pxt_home, instance, images, capfd, monkeypatch):
    monkeypatch.delenv("PXT_VERBOSE", raising=False)
    monkeypatch.setenv("PXT_PROGRESS_DELAY_S", "0")  # the bar from the first row (normally after 2 s)
    t = _table()
    capfd.readouterr()
    result = t.insert([{"img": str(p)} for p in images], instance=instance)
    out, err = capfd.readouterr()
    assert out.startswith("Inserted 3 rows with 0 errors in ") and out.count("\n") == 1
    assert "dagster - " not in out + err and "STEP_START" not in out + err
    assert "computed columns:" in err and "/3 [" in err and "row/s" in err  # tqdm: rows done of 3, rate
    events = [e.dagster_event.event_type_value for e in instance.all_logs(result.run_id) if e.dagster_event]
    assert "STEP_START" in events and "ASSET_MATERIALIZATION" in events  # the UI still has every event


def test_pxt_verbose_brings_the_event_stream_back(pxt_home, instance, images, capfd, monkeypatch):
    monkeypatch.setenv("PXT_VERBOSE", "1")
    t = _table()
    t.insert([{"img": str(images[0])}], instance=instance)
    out, err = capfd.readouterr()
    assert "STEP_START" in out + err and "Inserted 1 row" in out


_LINES = ("2026-01-02 03:04:05 +0000 - dagster - DEBUG - job - 1a2b - 42 - step - STEP_WORKER_STARTED - Executing",
          "\x1b[32m2026-01-02 03:04:05 +0000\x1b[0m - dagster - \x1b[34mINFO\x1b[0m - coloured",
          "2026-01-02 03:04:05 +0000 - dagster - CRITICAL - kept",
          "2026-01-02 03:04:05 +0000 - dagster.code_server - ERROR - kept too",
          "Traceback (most recent call last): kept as well")


def _child_writes_lines_to_stderr() -> None:
    import subprocess
    import sys
    import threading

    from pxt_assets import console

    script = f"import sys\nfor line in {_LINES!r}: print(line, file=sys.stderr)"
    with console.quiet_descendants():
        child = subprocess.Popen([sys.executable, "-c", script])
    assert child.wait(60) == 0
    for thread in threading.enumerate():  # the forwarder ends once the child's end of the pipe is closed
        if thread.name == "pxt-stderr":
            thread.join(10)


def test_processes_started_for_a_run_print_no_dagster_lines_below_critical(capfd, monkeypatch):
    monkeypatch.delenv("PXT_VERBOSE", raising=False)
    _child_writes_lines_to_stderr()
    out, err = capfd.readouterr()
    assert err.splitlines() == list(_LINES[2:]) and out == ""
    monkeypatch.setenv("PXT_VERBOSE", "1")
    _child_writes_lines_to_stderr()
    assert capfd.readouterr().err.splitlines() == list(_LINES)


def test_the_demo_prints_its_steps_and_tables_and_nothing_of_the_multiprocess_executor(pxt_env):  # noqa: F811
    """A real run: the demo's batch run is launched through a code server and its steps run in processes of
    Dagster's multiprocess executor, which log STEP_WORKER_STARTED before the run's loggers apply."""
    from pxt_assets_tests.test_cli_and_ui import output_of

    proc = pxt_env.cli("demo")
    assert proc.returncode == 0, output_of(proc)
    assert ">>> insert 3 sample images" in proc.stdout
    shown = proc.stdout + proc.stderr
    assert "STEP_WORKER_STARTED" not in shown and not re.search(r" - dagster - (DEBUG|INFO) - ", shown), shown
    instance = pxt_env.instance()
    try:
        events = [e.dagster_event.event_type_value for r in instance.get_runs()
                  for e in instance.all_logs(r.run_id) if e.dagster_event]
    finally:
        instance.dispose()
    assert events.count("STEP_WORKER_STARTED") == 2  # still in the event log: one per step process
