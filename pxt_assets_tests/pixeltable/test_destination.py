"""Pixeltable's tests/test_destination.py (v0.7.2), the cases about `destination=` arguments and a computed
column that is another media column: their assertions kept, with local folders for destinations."""

from __future__ import annotations

import pytest

import pxt_assets as pxt
from pxt_assets.stores import path_of
from pxt_assets_tests.conftest import files_under, make_image
from pxt_assets_tests.pixeltable.test_table import p, pxt_raises  # noqa: F401 - p is a fixture


def test_dest_errors(p, tmp_path) -> None:  # noqa: F811
    """Ported from pixeltable tests/test_destination.py::TestDestination::test_dest_errors (the type check and
    the local-path checks; https:// is a destination we support)."""
    t = pxt.create_table(p('test_dest_errors'), schema={'img': pxt.Image})

    # destination type and scheme are checked regardless of the catalog kind
    with pxt_raises(pxt.ErrorCode.TYPE_MISMATCH, match='must be a string or path'):
        t.add_computed_column(img_rot=t.img.rotate(90), destination=27)

    valid_dest = str(tmp_path)
    # destination only applies to stored computed columns
    with pxt_raises(pxt.ErrorCode.UNSUPPORTED_OPERATION, match='only applies to stored computed columns'):
        t.add_computed_column(img_rot=t.img.rotate(90), stored=False, destination=valid_dest)

    # Test destination with a non-existent directory
    with pytest.raises(pxt.Error, match='does not exist'):
        t.add_computed_column(img_rot=t.img.rotate(90), destination=str(tmp_path / 'non_existent_dir/img_rot'))
    assert t.columns() == ['img']


def test_dest_local_copy(p, tmp_path, pxt_home) -> None:  # noqa: F811
    """Ported from pixeltable tests/test_destination.py::TestDestination::test_dest_local_copy: a computed column
    that is just `t.img` references the inserted file (nothing written to the default media folder); with a
    destination, the file is copied there."""
    img = make_image(tmp_path / 'ILSVRC2012_val_00000557.JPEG')
    dest1 = tmp_path / 'bucket1'
    dest1.mkdir()
    dest1_uri = dest1.as_uri()

    t = pxt.create_table(p('test_dest'), schema={'img': pxt.Image})
    t.insert([{'img': str(img)}])
    t.add_computed_column(img_rot1=t.img, destination=None)
    t.add_computed_column(img_rot2=t.img, destination=dest1_uri)
    t.insert([{'img': str(img)}])
    r = t.collect()
    assert len(r) == 2

    r_dest = t.select(t.img.fileurl, t.img_rot1.fileurl, t.img_rot2.fileurl).collect()
    # Copying a local file to the LocalStore is not allowed: img_rot1 is the inserted file itself
    assert [path_of(u) for u in r_dest.to_pandas().iloc[:, 1]] == [img, img]
    assert files_under(pxt_home / 'media') == []
    # Ensure that local file is copied to a specified destination
    assert len(files_under(dest1)) == len(r)
    assert all(path_of(u).is_relative_to(dest1) for u in r_dest.to_pandas().iloc[:, 2])
