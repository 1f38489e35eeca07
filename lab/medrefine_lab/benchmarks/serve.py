"""``medrefine bench serve``: what the gRPC service costs over an in-process session.

Measured against a real ``medrefine serve`` process on a loopback port (the client runs here,
on the same cores):

- refine round trip minus the server's own refine time, for 2D 512^2 (nuclei) and 3D 128^3
  (hippocampus), beside the in-process refine time of the same marks (the baseline);
- bytes on the wire per refine: the mask update sent (a delta) against the whole mask, packed and
  compressed, and raw;
- upload of a 3D 256x256x128 float32 volume (32 MiB) in 1 MiB chunks, hashed and checked by the
  server (the backbone pass is not included);
- refine round trip p50/p95 with 1, 8 and 32 sessions refining at once (2D 512^2);
- failover: SIGKILL of the replica serving a session to the first answered call on another
  replica sharing the journal, and Health/ListModels round trips under 100 stalled and 8 large
  uploads (:mod:`medrefine_lab.benchmarks.failover`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np

import medrefine as mr
from medrefine.client import RemoteSession, stub
from medrefine.engine.budget.cache import FeatureCache
from medrefine.errors import ResourceError
from medrefine.serve import convert
from medrefine.v1 import refine_pb2 as pb
from medrefine_lab.benchmarks.failover import failover, health_under_stalls
from medrefine_lab.benchmarks.page import Page, add_page_option
from medrefine_lab.benchmarks.stats import percentile
from medrefine_lab.eval.report import machine


def _scene_2d() -> np.ndarray:
    """(3, 512, 512) uint8: the stained-nuclei sample tiled."""
    image = mr.load_sample("nuclei-stained").image
    return np.ascontiguousarray(np.tile(image, (1, 2, 2))[:, :512, :512])


def _scene_3d() -> np.ndarray:
    """(128, 128, 128) float32: the hippocampus-007 crop tiled."""
    image = mr.load_sample("hippocampus-007").image
    return np.ascontiguousarray(np.tile(image, (4, 3, 4))[:128, :128, :128])


def _marks(shape: tuple[int, ...], classes: int, count: int, seed: int = 0) -> list[mr.Mark]:
    """One short scribble per refine, classes in turn, at seeded places."""
    rng = np.random.default_rng(seed)
    out: list[mr.Mark] = []
    for i in range(count):
        a = [int(rng.integers(4, s - 12)) for s in shape]
        b = [v + int(rng.integers(2, 8)) for v in a]
        if len(shape) == 3:
            b[0] = a[0]
        out.append(mr.Scribble(i % classes, (tuple(a), tuple(b)), 1))
    return out


def _timed(session: mr.Session | RemoteSession, marks: list[mr.Mark]) -> list[tuple[float, float]]:
    """(wall ms, engine ms) of one refine per mark; the first (warm-up) refine is dropped."""
    out = []
    for mark in marks:
        session.add(mark)
        t = time.perf_counter()
        result = session.refine()
        out.append((1e3 * (time.perf_counter() - t), 1e3 * result.seconds))
    return out[1:]


def _overhead(target: str, model: str, image: np.ndarray, refines: int) -> list[str]:
    """One table row: in-process refine, remote round trip, overhead and bytes per refine.

    The same marks go to an in-process session (refining in a worker thread, as the server
    does), then to a remote one. The engine's own time
    (``RefineResult.seconds``) varies with load, so the overhead is taken per refine as (remote
    wall - its engine time) - (in-process wall - its engine time): what the service adds.
    """
    dims = mr.load_model(model).spatial_dims
    spatial = image.shape[-dims:]
    marks = _marks(spatial, 2, refines + 1)
    local = mr.Session(mr.load_model(model), cache=FeatureCache())
    local.set_image(image)
    near: list[tuple[float, float]] = []
    # in a worker thread, as the server runs its refines (on a loaded machine torch's thread
    # pool behaves differently in the main thread, which would skew the comparison)
    worker = threading.Thread(target=lambda: near.extend(_timed(local, marks)))
    worker.start()
    worker.join()
    sent, whole = [], []
    with RemoteSession(target, model) as remote:
        remote.set_image(image)
        remote.add(marks[0])
        remote.refine()  # warm-up, as the in-process one
        far = []
        for mark in marks[1:]:
            remote.add(mark)
            t = time.perf_counter()
            result = remote.refine()
            far.append((1e3 * (time.perf_counter() - t), 1e3 * result.seconds))
            sent.append(remote.last_mask_bytes)
            full = convert.encode_delta(None, 0, result.mask, remote.num_classes)
            whole.append(pb.MaskUpdate(version=1, delta=full).ByteSize())
        remote.close_session()
    over = [(rw - re) - (lw - le) for (rw, re), (lw, le) in zip(far, near, strict=True)]
    local_ms = [w for w, _ in near]
    wall = [w for w, _ in far]
    return [
        f"{model} {'x'.join(str(s) for s in spatial)}",
        f"{percentile(local_ms, 50):.0f} / {percentile(local_ms, 95):.0f}",
        f"{percentile(wall, 50):.0f} / {percentile(wall, 95):.0f}",
        f"{percentile(over, 50):.1f} / {percentile(over, 95):.1f}",
        f"{percentile(wall, 50) / percentile(local_ms, 50):.2f}",
        f"{np.median(sent):,.0f}",
        f"{np.median(whole):,.0f}",
        f"{int(np.prod(spatial)):,}",
    ]


def _upload(target: str, repeats: int) -> tuple[float, float, float]:
    """Seconds to stream a 256x256x128 float32 volume (p50, p95) and to hash it client-side."""
    volume = np.random.default_rng(0).random((256, 256, 128), np.float32)
    t = time.perf_counter()
    hashlib.sha256(volume.data).hexdigest()
    digest_s = time.perf_counter() - t
    raw = volume.data.cast("B")
    header = pb.OpenSessionHeader(
        model="hippocampus-unet3d",
        shape=volume.shape,
        dtype=pb.DTYPE_FLOAT32,
        digest="0" * 64,  # never matches: the server reads, hashes and refuses, no backbone
    )

    def stream() -> Iterator[pb.OpenSessionRequest]:
        yield pb.OpenSessionRequest(header=header)
        for at in range(0, len(raw), convert.CHUNK_BYTES):
            yield pb.OpenSessionRequest(chunk=bytes(raw[at : at + convert.CHUNK_BYTES]))

    times = []
    with grpc.insecure_channel(target) as channel:
        refiner = stub(channel)
        for _ in range(repeats):
            t = time.perf_counter()
            try:
                refiner.OpenSession(stream())
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.INVALID_ARGUMENT, exc.details()
            times.append(time.perf_counter() - t)
    return percentile(times, 50), percentile(times, 95), digest_s


def _concurrent(target: str, image: np.ndarray, sessions: int, refines: int) -> list[float]:
    """Round-trip ms of every refine of ``sessions`` clients refining at once."""
    times: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(sessions)

    def client(i: int) -> None:
        with RemoteSession(target, "nuclei-unet2d") as remote:
            remote.set_image(image)  # the same image: features computed once, then cached
            marks = _marks((512, 512), 2, refines, seed=i)
            ready.wait()
            for mark in marks:
                remote.add(mark)
                t = time.perf_counter()
                remote.refine()
                with lock:
                    times.append(1e3 * (time.perf_counter() - t))
            remote.close_session()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return times


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


@contextlib.contextmanager
def _server(workers: int) -> Iterator[str]:
    """A ``medrefine serve`` subprocess on a free loopback port; yields its target."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        cmd = [sys.executable, "-m", "medrefine.cli", "serve", "--port", "0"]
        cmd += ["--port-file", str(port_file), "--workers", str(workers), "--log-level", "WARNING"]
        cmd += ["--models", "nuclei-unet2d,hippocampus-unet3d"]
        proc = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 300
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ResourceError("medrefine serve did not start")
                time.sleep(0.1)
            yield f"127.0.0.1:{int(port_file.read_text())}"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def run(args: argparse.Namespace) -> int:
    page = Page.from_args(args, "serve")
    say: Callable[[str], None] = page.text
    with _server(args.workers) as target:
        say(f"Machine: {machine()}; server workers {args.workers}.\n")
        rows = [
            _overhead(target, "nuclei-unet2d", _scene_2d(), args.refines),
            _overhead(target, "hippocampus-unet3d", _scene_3d(), max(4, args.refines // 2)),
        ]
        head = [
            "case",
            "in-process refine p50 / p95 ms",
            "remote refine p50 / p95 ms",
            "service overhead p50 / p95 ms",
            "remote / in-process p50",
            "mask bytes sent (delta), median",
            "whole mask packed+zlib",
            "whole mask raw",
        ]
        say(_table(head, rows) + "\n")
        p50, p95, digest_s = _upload(target, args.uploads)
        mib = 256 * 256 * 128 * 4 / (1 << 20)
        say(
            f"Upload 256x256x128 float32 ({mib:.0f} MiB, 1 MiB chunks, server hashes and checks): "
            f"p50 {1e3 * p50:.0f} ms, p95 {1e3 * p95:.0f} ms ({mib / p50:.0f} MiB/s); "
            f"client SHA-256 {1e3 * digest_s:.0f} ms.\n"
        )
        image = _scene_2d()
        conc = []
        for n in args.sessions:
            t = _concurrent(target, image, n, args.refines)
            conc.append(
                [str(n), str(len(t)), f"{percentile(t, 50):.0f}", f"{percentile(t, 95):.0f}"]
            )
        head = ["sessions at once (2D 512^2)", "refines", "round trip p50 ms", "p95 ms"]
        say(_table(head, conc))
    if args.failovers:
        times = failover(_scene_2d(), args.failovers)
        say(
            f"\nFailover (2D 512^2, two replicas sharing a journal behind a relay; SIGKILL to the "
            f"first answered call on the other replica, which reopens the session: upload, "
            f"backbone, replay): p50 {percentile(times, 50):.2f} s, p95 "
            f"{percentile(times, 95):.2f} s over {len(times)} failovers.\n"
        )
    probes = health_under_stalls()
    cases = (("nothing else", probes["idle"]), ("100 stalled + 8 x 32 MiB", probes["loaded"]))
    rows = [
        [what, str(len(t)), f"{percentile(t, 50):.1f}", f"{percentile(t, 95):.1f}", f"{max(t):.1f}"]
        for what, t in cases
    ]
    head = ["Health.Check + ListModels while uploads run", "calls", "p50 ms", "p95 ms", "max ms"]
    say(_table(head, rows))
    page.write()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``medrefine bench serve``."""
    p = sub.add_parser("serve", help="gRPC service overhead, bytes, upload, concurrency")
    p.description = __doc__
    p.add_argument("--refines", type=int, default=12, help="refines per session")
    p.add_argument("--uploads", type=int, default=5, help="timed uploads")
    p.add_argument("--workers", type=int, default=2, help="server's refine workers")
    p.add_argument("--failovers", type=int, default=10, help="timed failovers (0: none)")
    p.add_argument(
        "--sessions",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[1, 8, 32],
        help="concurrency levels, comma-separated",
    )
    add_page_option(p)
    p.set_defaults(func=run)
