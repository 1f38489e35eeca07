"""NIfTI, NRRD, PNG, TIFF and .npy in and out with their geometry; the bad-file cases."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import tifffile
from dicom_maker import oblique_rotation
from PIL import Image

import medrefine as mr
from medrefine.errors import InputError, NotFoundError, ResourceError
from medrefine.io import read_volume, write_mask
from medrefine.samples import DATA


def _oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = oblique_rotation() @ np.diag([1.2, 0.9, 2.0])
    affine[:3, 3] = [-40.0, 22.0, 7.5]
    return affine


@pytest.fixture
def oblique_nifti(tmp_path: Path) -> Path:
    """The shipped hippocampus-007 MRI under an oblique affine."""
    image = nib.load(DATA / "hippocampus-007.nii.gz")
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), _oblique_affine()), path)
    return path


def test_nifti_reads_in_index_order_with_spacing_and_affine(oblique_nifti: Path) -> None:
    vol = read_volume(oblique_nifti)
    raw = np.asarray(nib.load(oblique_nifti).dataobj)
    np.testing.assert_array_equal(vol.array, raw.astype(np.float32))
    np.testing.assert_allclose(vol.affine, _oblique_affine())
    np.testing.assert_allclose(vol.spacing, (1.2, 0.9, 2.0), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_a_mask_keeps_the_source_affine(oblique_nifti: Path, tmp_path: Path, suffix: str) -> None:
    vol = read_volume(oblique_nifti)
    mask = mr.load_sample("hippocampus-007").label
    back = read_volume(write_mask(mask, vol, tmp_path / f"mask{suffix}"))
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_allclose(back.affine, _oblique_affine(), atol=1e-5)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-5)


def test_an_lps_nrrd_reads_into_ras(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    dirs = np.array([[0.0, 0.0, 1.5], [0.0, 0.5, 0.0], [0.7, 0.0, 0.0]])
    header = {
        "space": "left-posterior-superior",
        "space directions": dirs,
        "space origin": [1.0, 2.0, 3.0],
    }
    nrrd.write(str(tmp_path / "a.nrrd"), data, header, index_order="C")
    vol = read_volume(tmp_path / "a.nrrd")
    assert vol.array.shape == (4, 3, 2)  # index order: the file's fastest axis first
    expected = np.eye(4)
    expected[:3, :3] = np.diag([-1, -1, 1]) @ dirs.T
    expected[:3, 3] = [-1.0, -2.0, 3.0]
    np.testing.assert_allclose(vol.affine, expected)
    assert vol.spacing == pytest.approx((1.5, 0.5, 0.7))


def test_png_and_tiff_round_trips(tmp_path: Path) -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 8:30] = 3
    like = mr.Volume(np.zeros((3, 30, 40), np.uint8), spacing=(0.25, 0.5))
    png = read_volume(write_mask(mask, like, tmp_path / "m.png"))
    np.testing.assert_array_equal(png.array, mask)
    tif = read_volume(write_mask(mask, like, tmp_path / "m.tif"))
    np.testing.assert_array_equal(tif.array, mask)
    assert tif.spacing == pytest.approx((0.25, 0.5))
    npy = read_volume(write_mask(mask.astype(np.int64) + 300, like, tmp_path / "m.npy"))
    assert npy.array.dtype == np.uint16 and npy.array.max() == 303


def test_rgb_images_come_back_channel_first(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb")
    for name in ("a.png", "a.tif"):
        np.testing.assert_array_equal(read_volume(tmp_path / name).array, np.moveaxis(rgb, -1, 0))


def test_a_tiff_page_stack_is_a_volume(tmp_path: Path) -> None:
    stack = np.arange(4 * 10 * 12, dtype=np.uint16).reshape(4, 10, 12)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    np.testing.assert_array_equal(read_volume(tmp_path / "s.tif").array, stack)
    like = mr.Volume(stack)
    back = read_volume(write_mask(stack % 7, like, tmp_path / "m.tiff"))
    np.testing.assert_array_equal(back.array, stack % 7)


def test_a_3d_mask_is_not_a_png_and_jpeg_is_refused(tmp_path: Path) -> None:
    like = mr.Volume(np.zeros((4, 10, 12), np.float32))
    with pytest.raises(InputError, match="PNG holds one 2D mask"):
        write_mask(np.zeros((4, 10, 12), np.uint8), like, tmp_path / "m.png")
    with pytest.raises(InputError, match="JPEG is lossy"):
        write_mask(np.zeros((10, 12), np.uint8), mr.Volume(np.zeros((10, 12))), tmp_path / "m.jpg")
    with pytest.raises(InputError, match=r"mask shape \(9, 12\) does not match"):
        write_mask(np.zeros((9, 12), np.uint8), like, tmp_path / "m.nii.gz")
    with pytest.raises(InputError, match="integer labels"):
        write_mask(np.zeros((10, 12)), mr.Volume(np.zeros((10, 12))), tmp_path / "m.png")
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    like = mr.Volume(np.zeros((10, 12), np.uint8))
    target = write_mask(np.ones((10, 12), np.uint8), like, tmp_path / "m.tif")
    before = target.read_bytes()

    class BoomError(Exception):
        pass

    def explode(*args: object, **kwargs: object) -> None:
        Path(args[0]).write_bytes(b"half")  # type: ignore[arg-type]
        raise BoomError

    mp = pytest.MonkeyPatch()
    mp.setattr(tifffile, "imwrite", explode)
    try:
        with pytest.raises(BoomError):
            write_mask(np.zeros((10, 12), np.uint8), like, target)
    finally:
        mp.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]


def test_a_truncated_nifti_is_named(oblique_nifti: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw.nii"
    nib.save(nib.load(oblique_nifti), raw)
    raw.write_bytes(raw.read_bytes()[:-5000])
    with pytest.raises(InputError, match=f"{raw}: truncated"):
        read_volume(raw)
    gz = tmp_path / "cut.nii.gz"
    gz.write_bytes(oblique_nifti.read_bytes()[:-3000])
    with pytest.raises(InputError, match=f"{gz}: truncated or corrupt voxel data"):
        read_volume(gz)


def test_files_that_are_not_images(tmp_path: Path) -> None:
    for name in ("a.nii.gz", "a.nii", "a.png", "a.tif", "a.npy", "a.nrrd"):
        (tmp_path / name).write_bytes(b"hello, not an image at all" * 20)
        with pytest.raises(InputError, match=f"{name}: not a"):
            read_volume(tmp_path / name)
    (tmp_path / "a.xyz").write_text("?")
    with pytest.raises(InputError, match="unknown image format"):
        read_volume(tmp_path / "a.xyz")
    with pytest.raises(NotFoundError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")


def test_a_truncated_png_is_named(tmp_path: Path) -> None:
    src = DATA / "nuclei-stained.png"
    cut = tmp_path / "cut.png"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(InputError, match=f"{cut}: not a readable image"):
        read_volume(cut)


def test_a_4d_nifti_where_3d_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 3), np.float32), np.eye(4)), path)
    with pytest.raises(InputError, match=r"expected a 2D or 3D image, got shape \(5, 6, 7, 3\)"):
        read_volume(path)
    one = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 1), np.float32), np.eye(4)), one)
    assert read_volume(one).array.shape == (5, 6, 7)


def test_huge_headers_are_refused_before_any_voxel_is_read(tmp_path: Path) -> None:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4096, 4096, 4096))
    hdr.set_data_dtype(np.float32)
    path = tmp_path / "huge.nii.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4 + b"\0" * 1000)
    with pytest.raises(
        ResourceError, match=r"huge.nii.gz: the header declares shape \(4096, 4096, 4096\)"
    ):
        read_volume(path)
    npy = tmp_path / "huge.npy"
    with npy.open("wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000, 100)}
        )
    with pytest.raises(ResourceError, match=r"huge\.npy: the header declares shape"):
        read_volume(npy)
    with npy.open("wb") as fh:  # plausible shape, data missing
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (10, 20, 30)}
        )
    with pytest.raises(InputError, match=r"huge\.npy: truncated"):
        read_volume(npy)
    big = tmp_path / "big.png"
    Image.new("L", (8, 8)).save(big)
    data = bytearray(big.read_bytes())  # IHDR: width, height at bytes 16-24, CRC at 29-33
    data[16:24] = (40000).to_bytes(4, "big") + (30000).to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    big.write_bytes(bytes(data))
    with pytest.raises(ResourceError, match=r"big\.png: the header declares too many pixels"):
        read_volume(big)
