"""The C++ client (cpp/client) against a live ``medrefine serve``.

The example program opens a session on a shipped sample file, scribbles where the network is
wrong, refines, and prints label counts: they must equal what the in-process ``mr.Session`` gives
for the same image and scribble. The client is built with CMake against the system's gRPC C++
(or taken from ``MEDREFINE_CLIENT_BUILD``, the build folder ``.ci/run`` makes). Without the
compiler or the packages the tests skip, unless ``MEDREFINE_REQUIRE_CLIENT=1`` (set by ``.ci/run``)
turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medrefine as mr
from medrefine.samples import DATA, SAMPLES
from medrefine.types import Mark

pytestmark = pytest.mark.slow  # a CMake build and a live server

ROOT = Path(__file__).resolve().parents[2]
EXE = "medrefine_refine_file"
WALK = "medrefine_session_walk"
UNIT = "medrefine_test_mask_delta"
TOKEN = "c++-client-test-token"
REMOTE_FAILURE = 2  # the example's exit code for a failed call
MODELS = ("nuclei-unet2d", "hippocampus-unet3d")  # what the server serves


def _unavailable(reason: str) -> None:
    if os.environ.get("MEDREFINE_REQUIRE_CLIENT") == "1":
        pytest.fail(f"{reason}, and MEDREFINE_REQUIRE_CLIENT=1 requires the C++ client")
    pytest.skip(reason)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the built medrefine_refine_file."""
    prebuilt = os.environ.get("MEDREFINE_CLIENT_BUILD")
    if prebuilt:
        exe = Path(prebuilt) / EXE
        for name in (EXE, WALK, UNIT):
            assert (exe.parent / name).is_file(), (
                f"MEDREFINE_CLIENT_BUILD={prebuilt} holds no {name}"
            )
        return exe
    tools = ("cmake", "c++", "protoc", "grpc_cpp_plugin", "pkg-config")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        _unavailable(f"no {', '.join(missing)} on PATH (see the README's system packages)")
    for package in ("grpc++", "protobuf", "libpng", "zlib"):
        if subprocess.run(["pkg-config", "--exists", package], check=False).returncode != 0:
            _unavailable(f"pkg-config finds no {package} (see the README's system packages)")
    build = tmp_path_factory.mktemp("client-build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    client_source = str(ROOT / "cpp/client")
    _run(
        [
            "cmake",
            "-S",
            client_source,
            "-B",
            str(build),
            *generator,
            "-DMEDREFINE_CLIENT_BUILD_TESTS=ON",
        ]
    )
    _run(["cmake", "--build", str(build), "--parallel", "2"])
    return build / EXE


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, token_file: Path) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a ``medrefine serve`` that requires TOKEN, journals sessions and
    keeps a site per model (only the session walk accepts, once per model: every session starts
    from the network's head, as the in-process ones here do); SIGTERM at the end."""
    folder = tmp_path_factory.mktemp("server")
    port_file = folder / "port"
    command = [sys.executable, "-c", "import sys; from medrefine.cli import main; sys.exit(main())"]
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    args += ["--models", ",".join(MODELS), "--site-dir", str(folder / "sites")]
    args += ["--journal-dir", str(folder / "journal")]  # remembers closed sessions
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [*command, *args, "--token-file", str(token_file)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"medrefine serve did not start:\n{(folder / 'server.log').read_text()}"
                )
            time.sleep(0.2)
        yield f"127.0.0.1:{int(port_file.read_text())}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0, (folder / "server.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def test_mask_decoding_unit_checks_pass(client: Path) -> None:
    """Hand-packed masks at every bit width, 2D and 3D boxes, refused deltas (no server)."""
    result = subprocess.run([str(client.parent / UNIT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 0 failed check(s)" in result.stdout


def _scribble_where_wrong(mask: np.ndarray, truth: np.ndarray) -> mr.Scribble:
    """A short scribble of the class the network misses most, through pixels it misses."""
    wrong = truth != mask
    label = int(np.bincount(truth[wrong]).argmax())
    missed = np.argwhere((truth == label) & (mask != label))
    start = missed[len(missed) // 2]
    stop = np.minimum(start + 2, np.array(mask.shape) - 1)
    return mr.Scribble(label=label, points=[tuple(start), tuple(stop)], radius=1)


def _counts(mask: np.ndarray, classes: int) -> dict[int, int]:
    return {label: int(n) for label, n in enumerate(np.bincount(mask.ravel(), minlength=classes))}


def _parse(stdout: str) -> dict[str, list[str]]:
    """Every ``key value...`` line; keys that repeat (add_ms) keep the last value."""
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line.strip()}


def _parse_counts(values: list[str]) -> dict[int, int]:
    return {int(k): int(v) for k, v in (item.split(":") for item in values)}


def _check_example(
    client: Path,
    server: str,
    token_file: Path,
    model_name: str,
    path: Path,
    case: tuple[np.ndarray, np.ndarray, tuple[float, ...] | None],
) -> None:
    """Runs the example on ``path`` and compares its counts with the in-process session's on
    ``case``: the file's pixels in C order, its ground truth and the spacing the file carries
    (a PNG read by Pillow is a channel-last view, which the backbone may round differently)."""
    image, truth, spacing = case
    model = mr.load_model(model_name)
    session = mr.Session(model)
    before = session.set_image(mr.Volume(np.ascontiguousarray(image), spacing=spacing))
    scribble = _scribble_where_wrong(before, truth)
    session.add(scribble)
    after = session.refine().mask
    classes = model.num_classes
    assert _counts(after, classes) != _counts(before, classes), "the scribble must change the mask"

    points = ";".join(",".join(str(int(c)) for c in p) for p in scribble.points)
    command = [str(client), "--target", server, "--model", model_name, "--image", str(path)]
    command += ["--scribble", f"{scribble.label}:{points}", "--token-file", str(token_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = _parse(result.stdout)
    assert _parse_counts(out["labels_before"]) == _counts(before, classes)
    assert _parse_counts(out["labels_after"]) == _counts(after, classes)
    for call in ("open", "add", "refine", "close"):
        assert float(out[f"{call}_ms"][0]) > 0.0


@pytest.mark.parametrize("sample", ["nuclei-stained", "hippocampus-007"])
def test_example_prints_the_label_counts_of_the_in_process_session(
    client: Path, server: str, token_file: Path, sample: str
) -> None:
    spec = SAMPLES[sample]
    case = mr.load_sample(sample)
    spacing = case.spacing if spec.suffix == ".nii.gz" else None
    path = DATA / f"{sample}{spec.suffix}"
    _check_example(client, server, token_file, spec.model, path, (case.image, case.label, spacing))


def test_an_image_of_several_chunks_arrives_whole(
    client: Path, server: str, token_file: Path, tmp_path: Path
) -> None:
    """A 3D image of 2.9 MiB float32 (three 1 MiB chunks) in a NIfTI file with 0.8 mm voxels."""
    case = mr.load_sample("hippocampus-007")
    image = np.tile(case.image, (3, 2, 2))
    truth = np.tile(case.label, (3, 2, 2))
    assert image.nbytes > 2 << 20
    path = tmp_path / "tiled.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([0.8, 0.8, 0.8, 1.0])), path)
    spacing = (0.8, 0.8, 0.8)
    _check_example(client, server, token_file, "hippocampus-unet3d", path, (image, truth, spacing))


@pytest.mark.parametrize(
    ("model", "token", "status"),
    [
        ("nuclei-unet2d", "not-the-token", "UNAUTHENTICATED"),
        ("no-such-model", TOKEN, "NOT_FOUND"),
    ],
)
def test_a_refused_call_exits_non_zero_with_the_status_name(
    client: Path, server: str, tmp_path: Path, model: str, token: str, status: str
) -> None:
    token_path = tmp_path / "token"
    token_path.write_text(token)
    result = subprocess.run(
        [
            str(client),
            "--target",
            server,
            "--model",
            model,
            "--image",
            str(DATA / "fetalhead.png"),
            "--scribble",
            "1:10,10;12,12",
            "--token-file",
            str(token_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == REMOTE_FAILURE, result.stdout + result.stderr
    assert f"error: {status}:" in result.stderr
    assert "labels_before" not in result.stdout


def test_an_installed_client_links_into_a_viewers_cmake_project(
    client: Path, server: str, tmp_path: Path
) -> None:
    """`cmake --install`, then find_package(medrefine_client) + medrefine::client, as the README
    says; the consumer lists the server's models."""
    prefix, build = tmp_path / "prefix", tmp_path / "consumer"
    _run(["cmake", "--install", str(client.parent), "--prefix", str(prefix)])
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    source = ROOT / "cpp/client/tests/find_package"
    _run(
        ["cmake", "-S", str(source), "-B", str(build), *generator, f"-DCMAKE_PREFIX_PATH={prefix}"]
    )
    _run(["cmake", "--build", str(build)])
    listed = subprocess.run(
        [str(build / "list_models"), server, TOKEN], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    models = {line.split()[1]: line.split()[2:] for line in listed.stdout.splitlines()}
    assert set(models) == set(MODELS)
    for name in MODELS:
        model = mr.load_model(name)
        assert models[name] == [str(model.spatial_dims), *model.class_names]


def _crc(mask: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())


def _walk_marks(mask: np.ndarray, truth: np.ndarray) -> tuple[list[str], list[Mark]]:
    """A scribble where the network is wrong, a click in the last class and a box around class 1:
    as command-line arguments and as marks."""
    scribble = _scribble_where_wrong(mask, truth)
    last = int(truth.max())
    click = mr.Click(
        label=last, point=tuple(np.argwhere(truth == last)[len(np.argwhere(truth == last)) // 2])
    )
    inside = np.argwhere(truth == 1)
    box = mr.Box(label=1, start=tuple(inside.min(axis=0)), stop=tuple(inside.max(axis=0) + 1))

    def coords(p: tuple[int, ...]) -> str:
        return ",".join(str(int(c)) for c in p)

    args = [
        "--scribble",
        f"{scribble.label}:{';'.join(coords(p) for p in scribble.points)}",
        "--click",
        f"{click.label}:{coords(click.point)}",
        "--box",
        f"1:{coords(box.start)}:{coords(box.stop)}",
    ]
    return args, [scribble, click, box]


@pytest.mark.parametrize("sample", ["nuclei-stained", "hippocampus-007"])
def test_every_session_call_leaves_the_client_the_in_process_sessions_mask(
    client: Path, server: str, token_file: Path, sample: str
) -> None:
    """open, a refine on a scribble + click + box, undo, redo, get_mask, reset, undo, accept
    (twice, then with a mark queued), get_site, add_class, close, then reopening the closed id
    (refused with the server's reason)."""
    spec = SAMPLES[sample]
    case = mr.load_sample(sample)
    model = mr.load_model(spec.model)
    session = mr.Session(model, site=mr.Site(model))
    spacing = case.spacing if spec.suffix == ".nii.gz" else None
    opened = session.set_image(mr.Volume(np.ascontiguousarray(case.image), spacing=spacing))
    args, marks = _walk_marks(opened, case.label)
    for mark in marks:
        session.add(mark)
    refined = session.refine().mask
    assert _crc(refined) != _crc(opened), "the marks must change the mask"
    classes = session.num_classes
    expected = {
        "open": (1, _crc(opened)),
        "refine": (2, _crc(refined)),
        "undo": (3, _crc(session.undo())),
        "redo": (4, _crc(session.redo())),
        "get_mask": (4, _crc(session.mask)),
        "reset": (5, _crc(session.reset())),
        "undo_reset": (6, _crc(session.undo())),
    }
    accepted = session.accept()
    walk = client.parent / WALK
    command = [
        str(walk),
        "--target",
        server,
        "--model",
        spec.model,
        "--token-file",
        str(token_file),
    ]
    command += ["--image", str(DATA / f"{sample}{spec.suffix}"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    steps = {w[1]: (int(w[3]), int(w[5])) for w in lines if w[0] == "step"}
    assert steps == expected
    assert all(int(w[7]) == classes for w in lines if w[0] == "step")
    other = {w[0]: w[1:] for w in lines if w[0] != "step"}
    assert other["head"] == [session.head_source[0], "site_version", "0"]
    assert other["accept"] == [
        *("version", str(accepted.version), "images", str(accepted.images)),
        *("in_use", str(int(accepted.in_use)), "checked", "1", "classes", str(classes)),
    ]
    assert other["accept_again"] == ["version", str(accepted.version)]  # no image added twice
    assert other["site"] == ["versions", "1", "last", "1", "head", "network"]
    assert other["accept_pending"] == ["FAILED_PRECONDITION"]
    assert other["undo_fresh"] == ["FAILED_PRECONDITION"]
    iterations, events, received = (int(v) for v in other["refine"][1::2])
    assert events == received == iterations > 0
    assert other["add_class"] == ["label", str(classes), "classes", str(classes + 1)]
    assert session.add_class("lesion") == classes
    assert other["closed"] == ["1"]
    assert other["reopen_closed"] == ["NOT_FOUND", "SESSION_CLOSED"]  # the trailing reason


SAMPLE = ROOT / "docs" / "cpp-client-sample.txt"
SAMPLE_COMMAND = (
    "$ build/client/medrefine_refine_file --target localhost:50051 --model hippocampus-unet3d \\\n"
    "    --image python/medrefine/samples/data/hippocampus-007.nii.gz "
    '--scribble "1:17,20,20;17,25,22"'
)


def _stable(lines: dict[str, list[str]]) -> dict[str, list[str]]:
    """The lines of the example's output that do not vary between runs: label counts and the
    refine's outcome (its server time dropped)."""
    refine = lines.get("refine", [])
    if "server_ms" in refine:
        refine = refine[: refine.index("server_ms")]
    return {"labels_before": lines.get("labels_before", []), "refine": refine} | {
        "labels_after": lines.get("labels_after", [])
    }


def test_the_documented_sample_output_is_what_the_example_prints(
    client: Path, server: str, token_file: Path
) -> None:
    """docs/cpp-client-sample.txt (what the README's "C++ client" section shows) against a fresh
    run of its command; ``MEDREFINE_REGENERATE_SAMPLE=1`` rewrites the file from this run."""
    image = DATA / "hippocampus-007.nii.gz"
    command = [str(client), "--target", server, "--model", "hippocampus-unet3d"]
    command += ["--image", str(image), "--scribble", "1:17,20,20;17,25,22"]
    result = subprocess.run(
        [*command, "--token-file", str(token_file)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    if os.environ.get("MEDREFINE_REGENERATE_SAMPLE") == "1":
        SAMPLE.write_text(f"{SAMPLE_COMMAND}\n{result.stdout}")
    text = SAMPLE.read_text()
    assert text.startswith(SAMPLE_COMMAND + "\n"), "the sample's command changed"
    documented = _parse(text[len(SAMPLE_COMMAND) + 1 :])
    assert sorted(documented) == sorted(_parse(result.stdout))
    assert _stable(documented) == _stable(_parse(result.stdout)), (
        f"{SAMPLE} is stale: run this test with MEDREFINE_REGENERATE_SAMPLE=1"
    )
