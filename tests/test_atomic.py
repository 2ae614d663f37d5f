"""Atomic writes: all or nothing, and ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from digitlab.atomic import atomic_write, write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("crash in the middle")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.json"]


def test_new_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask


def test_a_folder_that_cannot_hold_the_file_is_named_by_the_file_asked_for(tmp_path):
    """The error names the user's file, not the hidden temporary one beside it."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError) as e:
        write_text(blocker / "model.onnx", "x")
    assert e.value.filename == str(blocker / "model.onnx")
    assert ".tmp" not in str(e.value)
