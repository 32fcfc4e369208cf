"""`topnas demo --fresh`: empties only folders the demo made, and accepts a new one."""
from __future__ import annotations

import pytest

from topnas.errors import ConfigError
from topnas.platform.demo import LOG_DIR, MARKER, clear_demo_folder


def test_a_new_folder_holding_only_this_runs_log_is_accepted(tmp_path):
    out = tmp_path / "demo"
    (out / LOG_DIR).mkdir(parents=True)  # the CLI opened this run's console log before the demo starts
    (out / LOG_DIR / "demo-1.log").write_text("this run\n")
    clear_demo_folder(out)
    assert [p.name for p in out.iterdir()] == [LOG_DIR]
    assert (out / LOG_DIR / "demo-1.log").read_text() == "this run\n"
    clear_demo_folder(tmp_path / "absent")  # nothing there: nothing to do
    assert not (tmp_path / "absent").exists()


def test_an_earlier_demo_is_emptied_except_the_log(tmp_path):
    out = tmp_path / "demo"
    (out / "sweeps" / "s").mkdir(parents=True)
    (out / "mlflow.db").write_text("x")
    (out / MARKER).write_text("made by topnas demo\n")
    (out / LOG_DIR).mkdir()
    clear_demo_folder(out)
    assert [p.name for p in out.iterdir()] == [LOG_DIR]


def test_a_folder_the_demo_did_not_make_is_refused_and_kept(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    (out / LOG_DIR).mkdir()
    with pytest.raises(ConfigError) as err:
        clear_demo_folder(out)
    assert err.value.field == "--out" and ".topnas-demo marker" in str(err.value)
    assert (out / "thesis.tex").read_text() == "keep me"
