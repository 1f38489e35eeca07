"""Session and RemoteSession keep the surface SessionLike names: neither gains or loses a public
name without the protocol (or its documented LOCAL_ONLY / REMOTE_ONLY lists) saying so."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

import medrefine as mr
from medrefine.client import RemoteSession
from medrefine.engine.budget.cache import FeatureCache
from medrefine.session_like import LOCAL_ONLY, MEMBERS, REMOTE_ONLY, SessionLike

EXPECTED_MEMBERS = {
    "set_image",
    "add",
    "refine",
    "undo",
    "redo",
    "reset",
    "add_class",
    "accept",
    "mask",
    "marks",
    "pending",
    "history",
    "can_undo",
    "can_redo",
    "num_classes",
    "class_names",
    "image_shape",
    "head_source",
}


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


@pytest.fixture(scope="module")
def local() -> mr.Session:
    return mr.Session(mr.load_model("nuclei-unet2d"), cache=FeatureCache(max_bytes=0))


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteSession]:
    session = RemoteSession("127.0.0.1:1", "nuclei-unet2d", timeout=1)  # never called
    yield session
    session.close()


def test_the_protocol_names_the_shared_surface() -> None:
    assert MEMBERS == EXPECTED_MEMBERS
    assert not (MEMBERS & LOCAL_ONLY) and not (MEMBERS & REMOTE_ONLY)
    assert mr.SessionLike is SessionLike


def test_session_has_the_protocol_and_only_the_listed_extras(local: mr.Session) -> None:
    names = _public(local)
    assert names >= MEMBERS, f"Session lacks {sorted(MEMBERS - names)}"
    assert names - MEMBERS == LOCAL_ONLY, (
        f"Session's public names beyond SessionLike changed: new "
        f"{sorted(names - MEMBERS - LOCAL_ONLY)}, gone {sorted(LOCAL_ONLY - names)}; "
        "add them to SessionLike or LOCAL_ONLY"
    )


def test_remote_session_has_the_protocol_and_only_the_listed_extras(remote: RemoteSession) -> None:
    names = _public(remote)
    assert names >= MEMBERS, f"RemoteSession lacks {sorted(MEMBERS - names)}"
    assert names - MEMBERS == REMOTE_ONLY, (
        f"RemoteSession's public names beyond SessionLike changed: new "
        f"{sorted(names - MEMBERS - REMOTE_ONLY)}, gone {sorted(REMOTE_ONLY - names)}; "
        "add them to SessionLike or REMOTE_ONLY"
    )


@pytest.mark.parametrize("cls", [mr.Session, RemoteSession], ids=lambda c: c.__name__)
def test_members_are_the_same_kind_with_the_protocols_parameters(cls: type) -> None:
    for name in sorted(MEMBERS):
        spec = inspect.getattr_static(SessionLike, name)
        impl = inspect.getattr_static(cls, name)
        assert isinstance(impl, property) == isinstance(spec, property), (cls.__name__, name)
        if isinstance(spec, property):
            continue
        wanted = inspect.signature(spec).parameters
        given = inspect.signature(impl).parameters
        for pname, param in wanted.items():
            assert pname in given, f"{cls.__name__}.{name} lacks parameter {pname!r}"
            assert given[pname].kind == param.kind, (cls.__name__, name, pname)
        extra = [p for p in given.values() if p.name not in wanted]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (
            f"{cls.__name__}.{name} requires parameters the protocol does not pass: {extra}"
        )


def test_the_check_sees_a_name_missing_from_the_lists() -> None:
    class Grown(RemoteSession):
        def thumbnail(self) -> None: ...

    grown = Grown("127.0.0.1:1", "nuclei-unet2d", timeout=1)
    try:
        assert _public(grown) - MEMBERS != REMOTE_ONLY
        assert _public(grown) - MEMBERS - REMOTE_ONLY == {"thumbnail"}
    finally:
        grown.close()
