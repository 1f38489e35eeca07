"""Hypothesis-generated requests, well-formed or not, never crash the server or leak a trace:
each gets OK or a status naming the problem, and an unrelated session keeps working."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medrefine as mr
from medrefine.client import RemoteSession
from medrefine.serve import ServerConfig
from medrefine.v1 import refine_pb2 as pb
from medrefine.v1 import refine_pb2_grpc as pb_grpc

from .conftest import Served, start

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
coords = st.lists(st.integers(-(2**31), 2**31 - 1) | st.integers(-3, 60), max_size=8)
small = st.integers(0, 2**32 - 1) | st.integers(0, 5)
marks = st.one_of(
    st.builds(
        lambda lab, p, r: pb.Mark(scribble=pb.Scribble(label=lab, points=p, radius=r)),
        small,
        coords,
        small,
    ),
    st.builds(
        lambda lab, p, r: pb.Mark(click=pb.Click(label=lab, point=p, radius=r)),
        small,
        coords,
        small,
    ),
    st.builds(
        lambda lab, a, b: pb.Mark(box=pb.Box(label=lab, start=a, stop=b)), small, coords, coords
    ),
    st.builds(lambda lab, p: pb.Mark(paint=pb.Paint(label=lab, pixels=p)), small, coords),
    st.just(pb.Mark()),
)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[Served]:
    s = start(ServerConfig(models=("nuclei-unet2d",), max_sessions=8, idle_ttl_s=0))
    yield s
    s.server.stop(grace=0)


@pytest.fixture(scope="module")
def stub(fuzz_server: Served) -> Iterator[pb_grpc.RefinerStub]:
    with grpc.insecure_channel(fuzz_server.target) as channel:
        yield pb_grpc.RefinerStub(channel)


@pytest.fixture(scope="module")
def victim(fuzz_server: Served) -> Iterator[RemoteSession]:
    """A well-behaved session opened before the fuzzing; it must survive it."""
    with RemoteSession(fuzz_server.target, "nuclei-unet2d") as remote:
        remote.set_image(np.full((3, 32, 32), 7, np.uint8))
        yield remote


def _check(call: object) -> None:
    try:
        if callable(call):
            call()
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED, (exc.code(), exc.details())
        assert "Traceback" not in (exc.details() or "")


@FUZZ
@given(
    model=st.sampled_from(["nuclei-unet2d", "", "x" * 300]),
    shape=st.lists(st.integers(0, 70), max_size=5),
    dtype=st.integers(0, 10),
    spacing=st.lists(st.floats(allow_nan=True), max_size=4),
    affine=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=17),
    session_id=st.text(max_size=10),
    digest=st.sampled_from(["", "0" * 64, "zz"]),
    preset=st.integers(0, 6),
    chunks=st.lists(st.binary(max_size=3000), max_size=4),
    header_first=st.booleans(),
)
def test_open_session_fuzz(
    stub: pb_grpc.RefinerStub,
    victim: RemoteSession,
    model: str,
    shape: list[int],
    dtype: int,
    spacing: list[float],
    affine: list[float],
    session_id: str,
    digest: str,
    preset: int,
    chunks: list[bytes],
    header_first: bool,
) -> None:
    header = pb.OpenSessionHeader(
        model=model,
        shape=shape,
        dtype=dtype,  # type: ignore[arg-type]
        spacing=spacing,
        affine=affine,
        session_id=session_id,
        digest=digest,
        preset=preset,  # type: ignore[arg-type]
    )
    stream = [pb.OpenSessionRequest(chunk=c) for c in chunks]
    stream.insert(0 if header_first else len(stream), pb.OpenSessionRequest(header=header))

    def call() -> None:
        reply = stub.OpenSession(iter(stream), timeout=30)
        if reply.session_id:
            stub.CloseSession(pb.SessionRequest(session_id=reply.session_id), timeout=30)

    _check(call)


@FUZZ
@given(batch=st.lists(marks, max_size=4), then=st.sampled_from(["Refine", "Undo", "Redo", "Reset"]))
def test_marks_and_steps_fuzz(
    stub: pb_grpc.RefinerStub, victim: RemoteSession, batch: list[pb.Mark], then: str
) -> None:
    sid = victim.session_id
    _check(lambda: stub.AddMarks(pb.AddMarksRequest(session_id=sid, marks=batch), timeout=30))
    if then == "Refine":
        _check(lambda: list(stub.Refine(pb.RefineRequest(session_id=sid), timeout=30)))
    else:
        _check(lambda: getattr(stub, then)(pb.SessionRequest(session_id=sid), timeout=30))


@FUZZ
@given(
    session_id=st.text(max_size=200), name=st.text(max_size=200), version=st.integers(0, 2**64 - 1)
)
def test_ids_and_names_fuzz(
    stub: pb_grpc.RefinerStub, session_id: str, name: str, version: int
) -> None:
    _check(lambda: stub.AddClass(pb.AddClassRequest(session_id=session_id, name=name)))
    _check(lambda: stub.GetHistory(pb.SessionRequest(session_id=session_id, known_version=version)))
    _check(lambda: list(stub.GetMask(pb.GetMaskRequest(session_id=session_id))))


def test_victim_survives(victim: RemoteSession) -> None:
    """Runs after the fuzz tests above (file order): the session still refines."""
    victim.reset()
    victim.add(mr.Scribble(1, [(5, 5), (10, 12)], 1))
    assert victim.refine().mask.shape == (32, 32)
