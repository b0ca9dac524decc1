"""A notebook's insert prints Pixeltable-like output (a progress bar, one summary line), not Dagster's event
stream; the events still go to the instance, and PXT_VERBOSE=1 brings them back to the console."""

from __future__ import annotations

import pxt_assets as pxt


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
