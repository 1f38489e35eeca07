"""Sites on a server (``serve --site-dir``): AcceptMask gives what ``Session.accept`` gives, a
restarted server keeps its site and replays each session from the head it started from, two
server processes share one site directory, and every misuse is a typed error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import medrefine as mr
from medrefine import errors
from medrefine.client import RemoteSession, RemoteStateError, stub
from medrefine.engine.budget.cache import FeatureCache
from medrefine.remote_site import RemoteSite
from medrefine.serve import ServerConfig
from medrefine.serve.journal import Journal
from medrefine.serve.sites import session_start
from medrefine.v1 import refine_pb2 as pb

from .conftest import Served, start

MODEL = "nuclei-fluo-unet2d"  # misses almost every stained nucleus: a site helps at once


@pytest.fixture(scope="module")
def quarters() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The stained sample cut into four (3, 128, 160) images, and their nuclei masks (y, x)."""
    case = mr.load_sample("nuclei-stained")
    label = (case.label > 0).astype(np.uint8)
    h, w = label.shape[0] // 2, label.shape[1] // 2
    boxes = [(slice(a, a + h), slice(b, b + w)) for a in (0, h) for b in (0, w)]
    images = [np.ascontiguousarray(case.image[(slice(None), *box)]) for box in boxes]
    return images, [label[box] for box in boxes]


@pytest.fixture(scope="module")
def model() -> mr.SplitModel:
    return mr.load_model(MODEL)


def _correct(session: RemoteSession | mr.Session, label: np.ndarray) -> None:
    """Paint every pixel of ``label`` and refine: the session's mask becomes ``label``."""
    for c in (0, 1):
        session.add(mr.Paint(c, np.argwhere(label == c)))
    session.refine()


def _summary(v: mr.site.SiteVersion) -> tuple[object, ...]:
    check = v.validation
    assert check is not None
    return (v.version, v.kind, v.images, v.class_names, v.in_use, check.reason, check.images)


def _config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(
        models=(MODEL,), site_dir=tmp_path / "sites", journal_dir=tmp_path / "journal"
    )


def test_accept_over_grpc_gives_the_in_process_versions_and_heads(
    tmp_path: Path, quarters: tuple[list[np.ndarray], list[np.ndarray]], model: mr.SplitModel
) -> None:
    images, labels = quarters
    served = start(_config(tmp_path))
    site = mr.Site(model)
    try:
        for image, label in zip(images[:3], labels[:3], strict=True):
            remote = RemoteSession(served.target, MODEL)
            local = mr.Session(model, site=site, cache=FeatureCache())
            np.testing.assert_array_equal(remote.set_image(image), local.set_image(image))
            assert remote.head_source == local.head_source
            _correct(remote, label)
            _correct(local, label)
            got, want = remote.accept(), local.accept()
            assert _summary(got) == _summary(want)
            assert got.validation is not None and want.validation is not None
            np.testing.assert_allclose(got.validation.site, want.validation.site, atol=1e-9)
            assert remote.accept() == got  # a repeated accept of one mask adds no image
            remote.close()
        assert [v.version for v in site.report().versions] == [1, 2, 3]
        assert got.in_use  # v2 passed already: the third image started from the site head
        remote_site = RemoteSite(served.target, MODEL)
        report = remote_site.report()
        assert [_summary(v) for v in report.versions] == [
            _summary(v) for v in site.report().versions
        ]
        fresh = mr.Session(model, site=site, cache=FeatureCache())
        fresh.set_image(images[3])  # what a session opened now says, in process
        assert remote_site.head_source() == fresh.head_source
        assert fresh.head_source[0] == "site v3"
        remote_site.close()
    finally:
        served.server.stop(grace=0)


def test_a_restarted_server_keeps_its_site_and_replays_from_the_same_head(
    tmp_path: Path, quarters: tuple[list[np.ndarray], list[np.ndarray]]
) -> None:
    images, labels = quarters
    config = _config(tmp_path)
    first = start(config)
    try:
        for image, label in zip(images[:2], labels[:2], strict=True):
            with RemoteSession(first.target, MODEL) as remote:
                remote.set_image(image)
                _correct(remote, label)
                assert remote.accept().version in (1, 2)
        with RemoteSession(first.target, MODEL, session_id="case-3") as remote:
            remote.set_image(images[2])
            assert remote.head_source[0] == "site v2" and remote.site_version == 2
            remote.add(mr.Click(0, (60, 80), 3))
            mask = remote.refine().mask
        with RemoteSite(first.target, MODEL) as site:
            assert site.reset().version == 3  # new sessions start from the network again
    finally:
        first.server.stop(grace=0)
    assert Journal(tmp_path / "journal").record("case-3").site_version == 2  # type: ignore[union-attr]

    second = start(config)
    try:
        with RemoteSite(second.target, MODEL) as site:
            assert [(v.version, v.kind) for v in site.report().versions] == [
                (1, "accept"), (2, "accept"), (3, "reset")
            ]  # fmt: skip
        with RemoteSession(second.target, MODEL, session_id="case-3") as again:
            np.testing.assert_array_equal(again.set_image(images[2]), mask)
            assert again.resumed and again.head_source[0] == "site v2"
        with RemoteSession(second.target, MODEL) as fresh:
            fresh.set_image(images[3])
            assert fresh.head_source[0] == "network" and fresh.site_version == 3
    finally:
        second.server.stop(grace=0)


def test_a_replayed_session_whose_site_version_is_gone_says_so(
    quarters: tuple[list[np.ndarray], list[np.ndarray]], model: mr.SplitModel
) -> None:
    images, labels = quarters
    site = mr.Site(model, mr.SiteConfig(history=2))
    for image, label in zip(images[:3], labels[:3], strict=True):
        session = mr.Session(model, site=site)
        session.set_image(image)
        _correct(session, label)
        session.accept()
    kept, version = session_start(MODEL, site, 2)
    assert version == 2 and kept is not None and kept.head is not None
    gone, version = session_start(MODEL, site, 1)
    assert version == 0 and gone is not None and gone.head is None
    assert "site v1" in gone.reason and "no longer keeps it" in gone.reason
    elsewhere, _ = session_start(MODEL, None, 2)
    assert elsewhere is not None and "--site-dir" in elsewhere.reason
    assert session_start(MODEL, None, 0) == (None, 0)


def _serve(site_dir: Path, port_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [sys.executable, "-m", "medrefine.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--port-file", str(port_file), "--models", MODEL, "--site-dir", str(site_dir)]
    cmd += ["--log-level", "WARNING"]
    log = port_file.with_suffix(".log")
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    return proc, str(log)


def _target(proc: subprocess.Popen[bytes], port_file: Path, log: str) -> str:
    deadline = time.monotonic() + 120
    while not port_file.exists():
        assert proc.poll() is None, Path(log).read_text()
        assert time.monotonic() < deadline, "server did not write its port file"
        time.sleep(0.1)
    return f"127.0.0.1:{int(port_file.read_text())}"


@pytest.mark.slow
def test_two_server_processes_share_one_site_dir(
    tmp_path: Path, quarters: tuple[list[np.ndarray], list[np.ndarray]]
) -> None:
    images, labels = quarters
    site_dir = tmp_path / "sites"
    procs = [_serve(site_dir, tmp_path / f"port{i}") for i in (0, 1)]
    try:
        targets = [_target(p, tmp_path / f"port{i}", log) for i, (p, log) in enumerate(procs)]
        sessions = [RemoteSession(t, MODEL) for t in targets]
        for session, image, label in zip(sessions, images, labels, strict=False):
            session.set_image(image)
            _correct(session, label)
        got: list[mr.site.SiteVersion] = []
        accepts = [threading.Thread(target=lambda s=s: got.append(s.accept())) for s in sessions]
        for thread in accepts:
            thread.start()
        for thread in accepts:
            thread.join()
        assert sorted(v.version for v in got) == [1, 2]  # at once, and neither lost
        reports = [RemoteSite(t, MODEL).report() for t in targets]
        assert [v.version for v in reports[0].versions] == [1, 2]
        assert reports[0].versions == reports[1].versions
        assert reports[0].versions[-1].images == 2 and reports[0].versions[-1].in_use
        for t in targets:  # either process starts the next image from the shared head
            with RemoteSession(t, MODEL) as fresh:
                fresh.set_image(images[2])
                assert fresh.head_source[0] == "site v2"
        for s in sessions:
            s.close()
    finally:
        for proc, _log in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _log in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    assert sorted(p.name for p in site_dir.glob("*.site")) == [f"{MODEL}.site"]


def test_a_server_without_a_site_refuses_accept_naming_site_dir(
    served: Served, nuclei: np.ndarray
) -> None:
    with RemoteSession(served.target, "nuclei-unet2d") as remote:
        remote.set_image(nuclei)
        assert remote.head_source == ("network", "no site") and remote.site_version == 0
        remote.add(mr.Click(1, (20, 20), 2))
        remote.refine()
        with pytest.raises(RemoteStateError, match="--site-dir") as refused:
            remote.accept()
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(RemoteStateError, match="--site-dir"):
            RemoteSite(served.target, "nuclei-unet2d").report()
        remote.undo()  # still usable
    info = {m.name: m.has_site for m in stub(grpc.insecure_channel(served.target)).ListModels(
        pb.ListModelsRequest()).models}  # fmt: skip
    assert info == {"nuclei-unet2d": False, "hippocampus-unet3d": False}


def test_site_misuse_is_typed_and_leaves_everything_usable(
    tmp_path: Path, quarters: tuple[list[np.ndarray], list[np.ndarray]]
) -> None:
    images, labels = quarters
    served = start(_config(tmp_path))
    try:
        remote = RemoteSession(served.target, MODEL)
        with pytest.raises(errors.StateError, match="set_image"):
            remote.accept()
        remote.set_image(images[0])
        remote.add(mr.Click(1, (20, 20), 2))
        with pytest.raises(RemoteStateError, match="refine"):  # a queued mark: not shown yet
            remote.accept()
        remote.refine()
        raw = stub(grpc.insecure_channel(served.target))
        stale = pb.AcceptMaskRequest(session_id=remote.session_id, mask_version=1)
        with pytest.raises(grpc.RpcError) as old:
            raw.AcceptMask(stale)
        assert old.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not the session's current mask (version 2)" in old.value.details()
        with pytest.raises(grpc.RpcError) as gone:
            raw.AcceptMask(pb.AcceptMaskRequest(session_id="nobody", mask_version=1))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        site = RemoteSite(served.target, MODEL)
        with pytest.raises(errors.NotFoundError, match=r"no version 9 \(kept: none\)"):
            site.rollback(9)
        with pytest.raises(errors.InputError, match="1 or more"):
            site.rollback(0)
        with pytest.raises(grpc.RpcError) as zero:
            raw.RollbackSite(pb.RollbackSiteRequest(model=MODEL, version=0))
        assert zero.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(errors.NotFoundError, match="not served"):
            RemoteSite(served.target, "no-such-model").report()
        first = remote.accept()
        assert (first.version, first.images, first.in_use) == (1, 1, False)
        remote.add(mr.Click(1, (30, 30), 2))
        with pytest.raises(RemoteStateError, match="refine"):  # accepted, but now a mark waits
            remote.accept()
        assert site.rollback(1).kind == "rollback"
        assert site.reset().images == 0
        remote.add(mr.Paint(1, np.argwhere(labels[0] == 1)))
        remote.refine()  # the session carries on
        assert remote.accept().version == 4
        site.close()
        remote.close()
    finally:
        served.server.stop(grace=0)


def test_a_journal_written_before_sites_opens_with_site_version_0(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, model TEXT NOT NULL, digest TEXT NOT NULL,"
        " geometry TEXT NOT NULL, preset INTEGER NOT NULL, created REAL NOT NULL,"
        " closed INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO sessions VALUES ('old', 'm', 'd', '{}', 0, 0.0, 0);"
    )
    db.commit()
    db.close()
    record = Journal(tmp_path).record("old")
    assert record is not None and record.site_version == 0
