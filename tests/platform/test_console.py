"""`console.session`: foreign output (fd 1/2, child processes) in the log file, our lines on the terminal."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from topnas.errors import ConfigError
from topnas.platform.console import session


def test_foreign_output_goes_to_the_log_and_ours_to_the_terminal(tmp_path, capfd):
    with session("sweep", tmp_path / "s" / "logs") as console:
        os.write(1, b"core_worker.cc:123 PreemptionWatcher error\n")  # what C++ writes, bypassing Python
        os.write(2, b"raylet: hello\n")
        subprocess.run([sys.executable, "-c", "print('Reporting training result')"], check=True)
        console.line("  trial t1  tf-1  completed")
        logging.getLogger("topnas.platform.sweep").error("could not record trial t2")
    out, err = capfd.readouterr()
    logs = list((tmp_path / "s" / "logs").glob("sweep-*.log"))
    assert len(logs) == 1 and console.log_path == logs[0]
    text = logs[0].read_text()
    for foreign in ("PreemptionWatcher", "raylet: hello", "Reporting training result"):
        assert foreign in text and foreign not in out + err
    assert out == "  trial t1  tf-1  completed\n"
    assert "ERROR topnas.platform.sweep: could not record trial t2" in err  # our errors stay on screen
    os.write(1, b"after\n")  # the terminal is back
    assert capfd.readouterr().out == "after\n"


def test_bad_input_leaves_nothing_behind(tmp_path, capfd):
    with pytest.raises(ConfigError), session("sweep", tmp_path / "new" / "logs"):
        os.write(2, b"mlflow: migrating\n")
        raise ConfigError("num_samples", 0, "an int >= 1")
    assert not (tmp_path / "new").exists()
    assert capfd.readouterr() == ("", "")


def test_a_crash_keeps_the_log_and_names_it_on_stderr(tmp_path, capfd):
    with pytest.raises(RuntimeError), session("train", tmp_path / "logs") as console:
        os.write(2, b"worker died\n")
        raise RuntimeError("TrainingFailedError")
    err = capfd.readouterr().err
    assert f"the full log of Ray, Tune and MLflow: {console.log_path}" in err
    assert "worker died" in console.log_path.read_text() and "worker died" not in err


def test_verbose_redirects_nothing(tmp_path, capfd):
    with session("demo", tmp_path / "logs", verbose=True) as console:
        os.write(1, b"Trial status: 1 RUNNING\n")
        console.line("ours")
    assert capfd.readouterr().out == "Trial status: 1 RUNNING\nours\n"
    assert console.log_path is None and not console.tty and not (tmp_path / "logs").exists()


def test_verbose_is_spelled_the_same_on_the_three_commands():
    from topnas.platform.cli import build_parser

    parser = build_parser()
    for argv in (["sweep", "x.yaml"], ["train", "x.yaml"], ["demo"]):
        assert parser.parse_args(argv).verbose is False
        for flag in ("-v", "--verbose"):
            assert parser.parse_args([*argv, flag]).verbose is True
            assert parser.parse_args([flag, *argv]).verbose is True  # the root's flag is not reset by the command
