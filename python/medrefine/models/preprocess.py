"""Turn an image as a user loads it into the network's input tensor, and back.

Images are channel-first with spatial axes in array order: 2D ``(H, W)`` or ``(C, H, W)``,
3D ``(D, H, W)`` or ``(C, D, H, W)``; a shape that also reads as a picture with its channels
last is refused unless the caller says which it is (:meth:`Preprocessing.layout`). Any numeric
dtype. The network sees float32, per-channel z-scored intensities, padded (edge-replicated) at
the high end of every spatial axis to a multiple of the network's stride.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from medrefine.errors import InputError

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: The least standard deviation a channel is divided by, as a fraction of its largest magnitude
#: (:func:`zscore`). A channel whose values vary less is flat at float32's precision (7
#: significant digits): its variations are a few units in the last place.
RELATIVE_STD_FLOOR = 1e-6
_PICTURE = (3, 4)  # channels of an RGB or RGBA picture


def zscore(arr: np.ndarray) -> np.ndarray:
    """Each channel of ``arr`` (``(C, *spatial)``, float32) z-scored over its pixels, float32.

    Scale-invariant: the statistics are taken on each channel divided by the power of two just
    above its largest magnitude (exact: a channel at any scale within float32's range, 1e-8 or
    1e30, is normalised as at its own scale, bit for bit when the scales differ by a power of
    two, and its squares neither overflow nor underflow), and the standard deviation is floored
    at :data:`RELATIVE_STD_FLOOR` times the largest magnitude, not at an absolute value. A
    channel of zeros stays zeros. An image whose standard deviation is above the floor gets the
    same values as ``(x - x.mean()) / x.std()`` computed directly in float32.
    """
    channels = arr.shape[0]
    top = np.abs(arr.reshape(channels, -1)).max(axis=1)
    _, exponent = np.frexp(top)
    shape = (-1,) + (1,) * (arr.ndim - 1)
    unit = np.ldexp(arr, -exponent.reshape(shape)).astype(np.float32, copy=False)
    flat = unit.reshape(channels, -1)
    mean, std = flat.mean(axis=1), flat.std(axis=1)
    floor = np.float32(RELATIVE_STD_FLOOR) * np.ldexp(top, -exponent).astype(np.float32)
    std = np.maximum(std, floor)
    std[std == 0] = 1  # a channel of zeros
    unit -= mean.reshape(shape)
    unit /= std.reshape(shape)
    return unit


def _check_unambiguous(shape: tuple[int, ...], d: int) -> None:
    """Raise InputError if an image of ``shape`` given to a ``d``-D model reads as a picture
    with its channels last as well as the channel-first way (see :meth:`Preprocessing.layout`)."""
    readings: list[str] = []
    if len(shape) == d + 1 and shape[0] in _PICTURE and shape[-1] in _PICTURE:
        readings = [
            f"{shape[0]} channels of {shape[1:]} pixels (channel-first)",
            f"{shape[-1]} channels of {shape[:-1]} pixels (channels last)",
        ]
    elif d == 3 and len(shape) == 3 and shape[-1] in _PICTURE:
        readings = [
            f"a volume of {shape} voxels (z, y, x)",
            f"a 2D picture of {shape[:-1]} pixels with {shape[-1]} channels last, which a 3D "
            "model cannot take",
        ]
    if readings:
        raise InputError(
            f"ambiguous image layout: shape {shape} could be {readings[0]} or {readings[1]}; "
            "say which with channels_last=False (channel-first, or no channel axis) or "
            "channels_last=True (the last axis is the channels)"
        )


@dataclass(frozen=True)
class Preprocessing:
    """How a model's input is prepared.

    Attributes:
        spatial_dims: 2 or 3.
        channels: channels the network takes (1 grey or 3 RGB); grey is repeated to RGB, RGB is
            turned to grey by luminance; a fourth (alpha) channel is dropped. None: as given.
        multiple: every spatial size is padded up to a multiple of this.
        normalize: z-score each channel over the image (:func:`zscore`: scale-invariant).
    """

    spatial_dims: int
    channels: int | None = None
    multiple: int = 1
    normalize: bool = True

    def digest(self) -> str:
        """Stable identifier of these settings (part of the feature-cache key)."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:16]

    def spatial_shape(self, image: np.ndarray) -> tuple[int, ...]:
        """Spatial shape of ``image`` (validates its rank)."""
        if image.ndim not in (self.spatial_dims, self.spatial_dims + 1):
            raise InputError(
                f"image has {image.ndim} axes; this {self.spatial_dims}D model takes "
                f"{self.spatial_dims} spatial axes, optionally after one channel axis"
            )
        return tuple(int(s) for s in image.shape[-self.spatial_dims :])

    def layout(self, image: np.ndarray, channels_last: bool | None = None) -> np.ndarray:
        """``image`` in the layout the rest of medrefine reads (channel-first), or InputError
        when its layout is ambiguous and ``channels_last`` does not say which it is.

        ``channels_last`` None: the array must be channel-first (or have no channel axis), as
        :mod:`medrefine.io` reads files; shapes that read as another picture with channels
        last are refused, naming both readings. True: the last axis is the channels (``(y, x,
        C)`` or ``(z, y, x, C)``); it is moved first. False: the array is channel-first, or has
        no channel axis, whatever its sizes. Refused as ambiguous when ``channels_last`` is
        None:

        - one axis more than the model's spatial axes, first and last of 3 or 4 (RGB, RGBA):
          ``(3, 256, 3)`` is a 256x3 RGB picture channel-first or a 3x256 one channels-last;
        - a 3D model given three axes, the last of 3 or 4: ``(47, 40, 3)`` is a 47x40x3 volume
          or a 47x40 RGB picture, which a 3D model cannot take.

        Whatever ``channels_last``, a model that drops a 4th channel as alpha (``channels``
        set) refuses a 4-channel image whose 4th channel varies: it may be the 4th slice of a
        stack, not an alpha channel, and would be lost (pass ``image[:3]`` to drop it).

        Args:
            image: the user's array, any numeric dtype.
            channels_last: see above.

        Returns:
            ``image`` itself, or a channel-first view of it for ``channels_last=True``.

        Raises:
            InputError: an ambiguous layout, a 4th channel that varies, ``channels_last=True``
                without the axes for it, or a ``channels_last`` that is not a bool or None.
        """
        if channels_last is not None and not isinstance(channels_last, (bool, np.bool_)):
            raise InputError(f"channels_last must be True, False or None, got {channels_last!r}")
        d, shape = self.spatial_dims, tuple(int(n) for n in image.shape)
        if channels_last:
            if image.ndim != d + 1:
                raise InputError(
                    f"channels_last=True: an image of shape {shape} has {image.ndim - 1} spatial "
                    f"axes before its channels; this {d}D model takes {d}"
                )
            image = np.moveaxis(image, -1, 0)
        elif channels_last is None:
            _check_unambiguous(shape, d)
        if self.channels is not None and image.ndim == d + 1 and image.shape[0] == 4:
            alpha = image[3]
            if alpha.size and alpha.min() != alpha.max():
                raise InputError(
                    f"image of shape {tuple(image.shape)} has 4 channels and the 4th varies: "
                    f"read as RGBA, its alpha would be dropped; it may instead be a stack of 4 "
                    f"slices, of which this model would lose the 4th. Pass image[:3] for an RGBA "
                    f"picture, or one {d}D slice of a stack"
                )
        return image

    def channel_first(self, image: np.ndarray) -> np.ndarray:
        """``image`` as float32 ``(channels, *spatial)`` with the model's channel count."""
        self.spatial_shape(image)
        if image.dtype.kind == "f" and image.dtype.itemsize > 4 and np.isfinite(image).all():
            top = float(np.abs(image).max(initial=0.0))
            if top > float(np.finfo(np.float32).max):
                raise InputError(
                    f"image values reach {top:.3g}, beyond float32's range (3.4e38): rescale it"
                )
            if self.normalize and 0.0 < top < float(np.finfo(np.float32).tiny):
                # below float32's normal range its values would lose their digits or become 0;
                # z-scoring ignores the scale, and a power of two changes no digit
                image = np.ldexp(image, -int(np.frexp(top)[1]))
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim == self.spatial_dims:
            arr = arr[None]
        if self.channels is None:
            return arr
        if arr.shape[0] == 4:
            arr = arr[:3]
        if arr.shape[0] not in (1, 3):
            raise InputError(f"image has {arr.shape[0]} channels; expected 1 (grey) or 3 (RGB)")
        if arr.shape[0] == 3 and self.channels == 1:
            arr = np.tensordot(_LUMA, arr, axes=1)[None]
        elif arr.shape[0] == 1 and self.channels == 3:
            arr = np.repeat(arr, 3, axis=0)
        return arr

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """Network input ``(1, channels, *padded)`` float32 for an image of any supported form."""
        arr = self.channel_first(image)
        if not np.isfinite(arr).all():
            raise InputError("image contains NaN or infinite values")
        if self.normalize:
            arr = zscore(arr)
        return self.pad(torch.from_numpy(np.ascontiguousarray(arr))[None])

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``(N, C, *spatial)`` at the high end of each spatial axis to ``multiple``.

        An image that fits in one ``multiple`` along every axis gets two along its last: a
        network downsampling by ``multiple`` would otherwise reach a single pixel, where
        instance normalisation has no statistics (every zoo network failed on such images).
        """
        sizes = [-(-int(n) // self.multiple) * self.multiple for n in x.shape[2:]]
        if self.multiple > 1 and all(n == self.multiple for n in sizes):
            sizes[-1] = 2 * self.multiple
        pads: list[int] = []
        for size, padded in zip(reversed(x.shape[2:]), reversed(sizes), strict=True):
            pads += [0, padded - int(size)]
        if not any(pads):
            return x
        return F.pad(x, pads, mode="replicate")
