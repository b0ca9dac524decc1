"""Issue #25 observations 2 and 3 (a versioned catalog), as tests: they fail on main until
versioned-catalog.patch lands; then they go back into pxt_assets_tests/test_trust.py (which has `_child`)."""

import pxt_assets as pxt
from pxt_assets_tests.test_trust import _child


def test_two_handles_adding_columns_keep_both(pxt_home, instance):
    t = pxt.create_table("trust/two", {"img": pxt.Image})
    assert t.count() == 0  # this process has used the table
    other = _child("t = pxt.get_table('trust/two'); t.add_computed_column(h=t.img.height)")
    assert other.returncode == 0, other.stderr[-2000:]
    t.add_computed_column(w=t.img.width)  # from the handle loaded before the other process's change
    again = _child("t = pxt.get_table('trust/two'); print(sorted(t.columns()))")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split("\n")[-2] == str(sorted(["img", "h", "w"]))


def test_a_table_recreated_by_another_process_is_seen_at_the_next_call(pxt_home, instance, images):
    t = pxt.create_table("trust/again", {"img": pxt.Image})
    t.insert([{"img": str(images[0])}], instance=instance)
    other = _child("pxt.create_table('trust/again', {'img': pxt.Image}, if_exists='replace')")
    assert other.returncode == 0, other.stderr[-2000:]
    fresh = pxt.get_table("trust/again")
    fresh.insert([{"img": str(images[1])}], instance=instance)
    assert fresh.count() == 1
