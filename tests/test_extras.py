"""The base install is what a Python user of Session needs: in a child interpreter where the
``serve``, ``io`` and ``viz`` extras' packages cannot be imported (grpc, connectrpc, pydicom,
highdicom, matplotlib, and medrefine's generated gRPC stubs), a session loads a model and
refines, and each call that needs an extra raises MissingExtraError naming it; the CLI says so
in one line.

protobuf itself stays importable: ``onnx``, a base dependency, needs it.
"""

from __future__ import annotations

import pytest

from blocked import run_blocked
from medrefine.errors import InputError, MissingExtraError
from medrefine.extras import EXTRA_OF, install_line, missing, require

EXTRAS_PACKAGES = (
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "connectrpc",
    "pydicom",
    "highdicom",
    "matplotlib",
    "medrefine.v1",
)

_BASE = """
import contextlib, io, json, pathlib, sys, tempfile

import numpy as np

import medrefine as mr
from medrefine import errors

out = {}
session = mr.Session(mr.load_model("nuclei-unet2d"))
image = mr.load_sample("nuclei-stained").image
mask = session.set_image(image)
session.add(mr.Scribble(label=1, points=[(10, 10), (10, 30)], radius=1))
result = session.refine()
out["refined"] = [
    list(result.mask.shape), bool((result.mask[10, 10:31] == 1).all()), len(session.marks)
]


def extra_of(call):
    try:
        call()
    except errors.MissingExtraError as exc:
        return [exc.extra, exc.name, f'pip install "medrefine[{exc.extra}]"' in str(exc)]
    return "no error"


from medrefine.io import read_volume, write_mask

folder = pathlib.Path(tempfile.mkdtemp())
fake = folder / "slice"
fake.write_bytes(bytes(128) + b"DICM" + bytes(16))
out["read_dicom"] = extra_of(lambda: read_volume(fake))
out["write_seg"] = extra_of(lambda: write_mask(mask, mr.Volume(image), folder / "mask.dcm"))
out["write_png"] = write_mask(mask, mr.Volume(image), folder / "mask.png").is_file()

from medrefine.viz import save_overlay

out["overlay"] = extra_of(lambda: save_overlay(folder / "o.png", image, [("m", mask)], None, 2))

from medrefine.cli import main

for argv in (["serve", "--port", "0"], ["bench", "serve"], ["demo"]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    out[" ".join(argv)] = [code, err.getvalue().strip()]

out["loaded"] = sorted(
    m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED)
)
try:
    import grpc
    out["grpc"] = "imported"
except ModuleNotFoundError as exc:
    out["grpc"] = exc.name
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def base() -> dict[str, object]:
    return run_blocked(EXTRAS_PACKAGES, _BASE)


def test_a_session_refines_without_any_extra(base: dict[str, object]) -> None:
    assert base["refined"] == [[256, 320], True, 1]
    assert base["loaded"] == []
    assert base["grpc"] == "grpc", "the blocker did not hold"


def test_calls_that_need_an_extra_name_it(base: dict[str, object]) -> None:
    assert base["read_dicom"] == ["io", "pydicom", True]
    assert base["write_seg"] in (["io", "highdicom", True], ["io", "pydicom", True])
    assert base["write_png"] is True
    assert base["overlay"] == ["viz", "matplotlib", True]


@pytest.mark.parametrize(
    ("argv", "extra"), [("serve --port 0", "serve"), ("bench serve", "serve"), ("demo", "viz")]
)
def test_the_cli_names_the_missing_extra(base: dict[str, object], argv: str, extra: str) -> None:
    code, message = base[argv]  # type: ignore[misc]
    assert code == 2
    assert message.startswith("medrefine: error: ") and "\n" not in message
    assert f"needs the {extra!r} extra" in message
    assert f'pip install "medrefine[{extra}]"' in message


def test_missing_maps_only_extras_packages() -> None:
    error = missing(ModuleNotFoundError("x", name="highdicom.seg"), "writing a DICOM-SEG")
    assert isinstance(error, MissingExtraError) and isinstance(error, InputError)
    assert isinstance(error, ImportError)  # code that falls back on ImportError still does
    assert (error.extra, error.name) == ("io", "highdicom")
    assert str(error).startswith("writing a DICOM-SEG needs the 'io' extra")
    assert install_line("io") in str(error)
    assert missing(ModuleNotFoundError("x", name="medrefine.nothing"), "x") is None
    assert EXTRA_OF["grpc"] == "serve" and EXTRA_OF["matplotlib"] == "viz"


def test_require_imports_or_raises_the_typed_error() -> None:
    assert require("json", "a test").__name__ == "json"
    with pytest.raises(ModuleNotFoundError) as exc:  # not an extra's: a plain import error
        require("medrefine_no_such_module", "a test")
    assert not isinstance(exc.value, MissingExtraError)


_WITHOUT_LAB = """
import contextlib, io, json, sys

import medrefine as mr
from medrefine.cli import main

out = {}
session = mr.Session(mr.load_model("nuclei-unet2d"))
out["mask"] = list(session.set_image(mr.load_sample("nuclei-stained").image).shape)
for argv in (["demo"], ["bench", "engine"], ["models", "--evaluate", "somewhere"]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    out[" ".join(argv)] = [code, err.getvalue().strip()]
try:
    import medrefine_lab
    out["lab"] = "imported"
except ModuleNotFoundError as exc:
    out["lab"] = exc.name
print(json.dumps(out))
"""


def test_the_runtime_works_without_the_lab_and_its_commands_name_it() -> None:
    found = run_blocked(("medrefine_lab",), _WITHOUT_LAB)
    assert found["lab"] == "medrefine_lab", "the blocker did not hold"
    assert found["mask"] == [256, 320]
    for argv in ("demo", "bench engine", "models --evaluate somewhere"):
        code, message = found[argv]
        assert code == 2, (argv, message)
        assert message.startswith("medrefine: error: ") and "\n" not in message
        assert "needs medrefine's lab" in message and "pip install ./lab" in message
