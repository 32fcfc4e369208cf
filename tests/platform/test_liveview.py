"""The live view's text, drawn from sweep and training folders built by hand (no Ray, no MLflow)."""
from __future__ import annotations

import io
import json

from topnas.platform.console import Console
from topnas.platform.liveview import (
    FRONT_ROWS,
    StartupWaits,
    read_sweep,
    read_train,
    render_sweep,
    render_train,
    startup_wait_line,
    trial_line,
    watch,
    watch_sweep,
)
from topnas.platform.sweep import Ledger, TrialRecord


def _sweep(folder, rows, started=()):
    ledger = Ledger(folder)
    for tid, status, miou, ms, reason in rows:
        ledger.append(TrialRecord(trial_id=tid, variant_id=f"tf-{tid}", status=status, val_mIoU=miou,
                                  latency_ms=ms, reason=reason, iteration=40 if status == "completed" else 10))
    for tid in started:  # Tune makes tune/<trial id>/params.json when a trial starts
        (folder / "tune" / tid).mkdir(parents=True)
        (folder / "tune" / tid / "params.json").write_text("{}")
    return folder


ROWS = [
    ("a", "completed", 0.30, 20.0, ""),
    ("b", "completed", 0.20, 10.0, ""),
    ("c", "completed", 0.10, 30.0, ""),  # dominated by a
    ("d", "early_stopped", 0.50, 5.0, "stopped by ASHA at iteration 10/40"),
    ("e", "failed", None, 12.0, "RuntimeError: boom\nTraceback ..."),
    ("f", "infeasible", None, 99.0, "predicted 99.0 ms > budget 60 ms"),
]


def test_counts_front_and_running_from_the_folder(tmp_path):
    folder = _sweep(tmp_path / "s", ROWS, started=("a", "b", "c", "d", "e", "g", "h"))
    (folder / "tune" / "half").mkdir()  # a folder without params.json is not a started trial
    snap = read_sweep(folder, "s", 8)
    assert snap.counts == {"running": 2, "finished": 3, "stopped": 1, "failed": 1, "infeasible": 1, "abandoned": 0}
    assert snap.done == 5
    assert snap.front == [("tf-b", 0.20, 10.0), ("tf-a", 0.30, 20.0)]  # early-stopped d never on the front
    assert [r["trial_id"] for r in snap.finished] == ["a", "b", "c", "d", "e", "f"]


def test_render_sweep_block(tmp_path):
    snap = read_sweep(_sweep(tmp_path / "s", ROWS, started=("g",)), "demo", 8)
    lines = render_sweep(snap, elapsed_s=125.0, done_at_start=0)
    assert lines[0] == "sweep demo: 5/8 trials   elapsed 2:05   ETA 1:15"  # 25 s a trial, 3 left
    assert lines[1] == "  running 1   finished 3   stopped 1   infeasible 1   failed 1"
    assert lines[2].split() == ["front", "(2):", "variant", "mIoU", "latency", "ms"]
    assert lines[3].split() == ["tf-b", "0.2000", "10.0"] and lines[4].split() == ["tf-a", "0.3000", "20.0"]
    assert len(lines) == 5
    # a resumed sweep's ETA counts only what this process did; nothing done yet: no ETA
    assert render_sweep(snap, 10.0, done_at_start=5)[0].endswith("ETA -")
    assert render_sweep(snap, 3725.0, done_at_start=3)[0] == "sweep demo: 5/8 trials   elapsed 1:02:05   ETA 1:33:07"


def test_an_abandoned_trial_is_not_one_of_num_samples(tmp_path):
    """A resumed sweep runs a new trial in place of one its killed driver abandoned: 4/4, not 5/4."""
    from topnas.platform.objectives import ABANDONED_PREFIX

    rows = [(t, "completed", 0.1 * i, 10.0 * i, "") for i, t in enumerate("abcd", 1)]
    rows.append(("x", "failed", None, 12.0, f"{ABANDONED_PREFIX} the driver was killed after this trial started"))
    snap = read_sweep(_sweep(tmp_path / "s", rows), "r", 4)
    assert snap.counts["abandoned"] == 1 and snap.counts["failed"] == 0 and snap.done == 4
    lines = render_sweep(snap, 100.0)
    assert lines[0].startswith("sweep r: 4/4 trials")
    assert lines[1] == "  running 0   finished 4   stopped 0   infeasible 0   failed 0   abandoned 1 (run again)"


def test_render_sweep_before_any_trial_and_long_front(tmp_path):
    empty = read_sweep(tmp_path / "nothing", "x", 4)
    assert empty.counts == dict.fromkeys(("running", "finished", "stopped", "failed", "infeasible", "abandoned"), 0)
    assert render_sweep(empty, 0.0)[-1] == "  front: no finished trial yet"
    rows = [(f"t{i}", "completed", 0.1 + i / 100, 10.0 + i, "") for i in range(FRONT_ROWS + 3)]
    lines = render_sweep(read_sweep(_sweep(tmp_path / "s", rows), "x", 20), 1.0)
    assert f"front ({FRONT_ROWS + 3})" in lines[2] and lines[-1].strip() == "... 3 more"
    assert lines[3].split()[0] == "tf-t0" and len(lines) == 3 + FRONT_ROWS + 1


def test_trial_lines(tmp_path):
    snap = read_sweep(_sweep(tmp_path / "s", ROWS), "s", 8)
    by_id = {r["trial_id"]: trial_line(r) for r in snap.finished}
    assert by_id["b"].split() == ["trial", "b", "tf-b", "completed", "mIoU", "0.2000", "10.0", "ms", "front"]
    assert by_id["c"].split()[-1] == "ms"  # completed, not on the front
    assert by_id["e"].endswith("(RuntimeError: boom)")  # the reason's first line only
    assert "mIoU    -" in by_id["e"] and by_id["f"].endswith("(predicted 99.0 ms > budget 60 ms)")
    assert "ASHA" not in by_id["d"]  # an early stop is a status, not an error


def test_train_snapshot_reads_the_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    for it, miou in ((20, 0.1), (40, None)):
        ck = run / f"checkpoint_2026-01-01_00-00-{it:02d}" / "rank_0"
        ck.mkdir(parents=True)
        (ck / "trainer_state.json").write_text(json.dumps({"iteration": it, "metrics":
                                                           {"val_mIoU": miou} if miou else {}}))
    (run / "checkpoint_x").mkdir()  # being written: no state yet
    snap = read_train(run, "r", 120)
    assert (snap.iteration, snap.metrics) == (40, {})
    assert render_train(snap, 60.0, start_iteration=0) == [
        "train r: iteration 40/120 (33%, at the last checkpoint)   elapsed 1:00   ETA 2:00"]
    assert read_train(tmp_path / "none", "r", 10).iteration == 0
    snap.metrics = {"val_mIoU": 0.25}
    assert render_train(snap, 60.0)[1] == "  val mIoU 0.2500"


def test_plain_output_has_no_cursor_control(tmp_path):
    folder = _sweep(tmp_path / "s", ROWS[:2], started=("a", "b"))
    out = io.StringIO()
    console = Console(out, log_path=tmp_path / "x.log")
    assert not console.tty
    with watch_sweep(console, folder, "s", 4):
        _sweep(folder, ROWS[2:3])  # a trial finishes while the view runs
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].startswith("logs of Ray, Tune and MLflow: ") and str(tmp_path / "x.log") in lines[0]
    assert [line.split()[1] for line in lines if line.startswith("  trial ")] == ["c"]  # only the new trial
    assert lines[-5].startswith("sweep s: 3/4 trials") and lines[-1].split() == ["tf-a", "0.3000", "20.0"]


def test_terminal_block_is_redrawn_in_place():
    out = io.StringIO()
    console = Console(out, tty=True)
    console.block(["one", "two"])
    console.line("permanent")
    console.block(["three"])
    # up 2 lines, blank both, up again: the permanent line replaces the block, which follows it again
    erase2 = "\r\x1b[2A" + "\x1b[2K\x1b[1B" * 2 + "\x1b[2A"
    assert out.getvalue() == "one\ntwo\n" + erase2 + "permanent\n" "one\ntwo\n" + erase2 + "three\n"


def test_a_failing_tick_never_breaks_the_run_and_a_failed_start_leaves_no_block():
    out = io.StringIO()
    console = Console(out, tty=True)
    calls = []

    def tick(elapsed):
        calls.append(elapsed)
        if len(calls) == 1:
            return ["starting"]
        raise ValueError("half-written file")

    try:
        with watch(console, tick, poll_s=0.01):
            while len(calls) < 3:
                pass
            raise KeyError("bad input")
    except KeyError:
        pass
    assert out.getvalue() == "starting\n" + "\r\x1b[1A\x1b[2K\x1b[1B\x1b[1A"


def test_our_warnings_on_a_terminal_go_above_the_block(tmp_path, monkeypatch):
    import logging

    from topnas.platform import console as C

    monkeypatch.setattr(C, "_isatty", lambda stream: True)
    with C.session("sweep", tmp_path / "logs") as console:
        console.block(["sweep s: 0/2 trials"])
        logging.getLogger("topnas.platform.sweep.callback").error("could not record finished trial t1")
        console.close_block()
    assert console.lines_written == 1  # the error went through the console, which redrew its block below it


RETRY = ("(TrainController pid=1) ray.train.v2._internal.exceptions.WorkerGroupStartupTimeoutError: The worker "
         "group startup timed out after 10.0 seconds waiting for 2 workers. Potential causes include: ...\n")


def test_startup_waits_reads_only_what_was_appended_and_whole_lines(tmp_path):
    log = tmp_path / "sweep.log"
    log.write_text("Trial status: 2 PENDING\n" + RETRY[:60])  # a line cut mid-way by the read
    waits = StartupWaits(log, "proxy.workers_per_trial")
    assert waits.poll() == []
    with open(log, "a") as f:
        f.write(RETRY[60:] + "unrelated\n")
    assert waits.poll() == [(10.0, 2)]
    assert waits.poll() == []  # read once
    with open(log, "a") as f:
        f.write(RETRY.replace("10.0 seconds waiting for 2", "60.0 seconds waiting for 4"))
    assert waits.poll() == [(60.0, 4)]
    assert StartupWaits(None, "x").poll() == [] and StartupWaits(tmp_path / "missing.log", "x").poll() == []


def test_the_console_says_when_trials_wait_for_resources(tmp_path):
    folder = _sweep(tmp_path / "s", [], started=("a", "b"))
    log = tmp_path / "x.log"
    log.write_text(RETRY * 3)  # what Ray forwarded while both trials wait for CPUs
    out = io.StringIO()
    with watch_sweep(Console(out, log_path=log), folder, "s", 2):
        pass
    notes = [line for line in out.getvalue().splitlines() if "waiting for resources" in line]
    assert notes == [startup_wait_line((10.0, 2), "proxy.workers_per_trial, proxy.cpus_per_worker, max_concurrent")]
    assert "2 Ray Train worker(s) could not all start within 10 s" in notes[0]  # one note, not one per line
    quiet = io.StringIO()
    log.write_text("nothing about resources\n")
    with watch_sweep(Console(quiet, log_path=log), folder, "s", 2):
        pass
    assert "waiting for resources" not in quiet.getvalue()


def test_notes_about_waiting_come_at_most_every_so_often(tmp_path):
    log = tmp_path / "x.log"
    out = io.StringIO()
    console = Console(out, log_path=log)
    waits = StartupWaits(log, "scaling.num_workers", every_s=300)
    for elapsed in (10, 70, 130, 400):  # a retry a minute
        with open(log, "a") as f:
            f.write(RETRY)
        waits.note(console, elapsed)
    notes = [line for line in out.getvalue().splitlines() if "waiting for resources" in line]
    assert len(notes) == 2 and all("see scaling.num_workers and the log" in n for n in notes)  # at 10 s and 400 s
