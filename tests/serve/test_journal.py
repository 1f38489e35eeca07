"""Nothing acknowledged is lost: a session rebuilt from the journal (after SIGKILL, or on another
server process sharing the journal) replays to the same mask and carries on identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import medrefine as mr
from medrefine import errors
from medrefine.client import RemoteSession
from medrefine.engine.budget.cache import FeatureCache
from medrefine.serve import ServerConfig
from medrefine.serve.journal import Journal

from .conftest import marks_2d, start


def _interact(remote: RemoteSession | mr.Session) -> np.ndarray:
    """The same interactions on either kind of session; the mask after them."""
    marks = marks_2d()
    remote.add(marks[0])
    remote.add(marks[1])
    remote.refine()
    label = remote.add_class("lesion")
    remote.add(mr.Scribble(label, [(60, 60), (62, 70)], 1))
    remote.refine()
    remote.undo()
    remote.redo()
    remote.add(marks[2])  # queued, not refined: must survive too
    return remote.mask


def test_second_server_on_the_same_journal_replays(tmp_path: Path, nuclei: np.ndarray) -> None:
    config = ServerConfig(models=("nuclei-unet2d",), journal_dir=tmp_path)
    first = start(config)
    with RemoteSession(first.target, "nuclei-unet2d", session_id="case-17") as remote:
        remote.set_image(nuclei)
        mask = _interact(remote)
        history = [i.kind for i in remote.history]
    first.server.stop(grace=0)

    second = start(config)
    try:
        with RemoteSession(second.target, "nuclei-unet2d", session_id="case-17") as again:
            np.testing.assert_array_equal(again.set_image(nuclei), mask)
            assert again.resumed and again.uploaded  # a fresh process holds no image
            assert [i.kind for i in again.history] == history
            assert again.class_names == ("background", "nucleus", "lesion")
            local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
            local.set_image(nuclei)
            _interact(local)
            np.testing.assert_array_equal(again.refine().mask, local.refine().mask)
            again.close_session()
        closed = RemoteSession(second.target, "nuclei-unet2d", session_id="case-17")
        with pytest.raises(errors.NotFoundError, match="closed"):
            closed.set_image(nuclei)
        closed.close()
    finally:
        second.server.stop(grace=0)
    events = [kind for kind, _ in Journal(tmp_path).events("case-17")]
    assert events == [
        "add",
        "add",
        "refine",
        "add_class",
        "add",
        "refine",
        "undo",
        "redo",
        "add",
    ] + [
        "refine"  # on the second server
    ]


def _serve(journal: Path, port_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "medrefine.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--port-file", str(port_file), "--models", "nuclei-unet2d"]
    cmd += ["--journal-dir", str(journal), "--log-level", "WARNING"]
    log = port_file.with_suffix(".log")
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "server did not write its port file"
        time.sleep(0.1)
    port = port_file.read_text()
    assert port.endswith("\n")
    return proc, f"127.0.0.1:{int(port)}"


@pytest.mark.slow
def test_sigkill_and_restart_replays_to_the_same_mask(tmp_path: Path, nuclei: np.ndarray) -> None:
    journal, port_file = tmp_path / "journal", tmp_path / "port"
    proc, target = _serve(journal, port_file)
    try:
        with RemoteSession(target, "nuclei-unet2d", session_id="ward-3") as remote:
            remote.set_image(nuclei)
            mask = _interact(remote)
            assert len(remote.pending) == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    proc, target = _serve(journal, port_file)
    try:
        with RemoteSession(target, "nuclei-unet2d", session_id="ward-3") as again:
            np.testing.assert_array_equal(again.set_image(nuclei), mask)
            assert again.resumed
            assert [i.kind for i in again.history] == ["refine", "add_class", "refine"]
            local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
            local.set_image(nuclei)
            _interact(local)  # the queued mark survived the kill: the next refine uses it
            np.testing.assert_array_equal(again.refine().mask, local.refine().mask)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0  # drains and exits cleanly
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_client_carries_on_across_a_server_restart(tmp_path: Path, nuclei: np.ndarray) -> None:
    """The same RemoteSession object: its next call finds the session gone, reopens it by id
    (re-sending the image), and the call goes through on the replayed session."""
    config = ServerConfig(models=("nuclei-unet2d",), journal_dir=tmp_path)
    first = start(config)
    port = first.target.rsplit(":", 1)[1]
    remote = RemoteSession(first.target, "nuclei-unet2d")
    remote.set_image(nuclei)
    remote.add(marks_2d()[0])
    remote.refine()
    first.server.stop(grace=0)
    second = start(config, port=int(port))  # the same address, as a restarted server
    try:
        remote.add(marks_2d()[1])
        assert remote.resumed and remote.uploaded
        refined = remote.refine().mask
        local = mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache())
        local.set_image(nuclei)
        local.add(marks_2d()[0])
        local.refine()
        local.add(marks_2d()[1])
        np.testing.assert_array_equal(refined, local.refine().mask)
        np.testing.assert_array_equal(remote.mask, remote.get_mask())
    finally:
        remote.close()
        second.server.stop(grace=0)
