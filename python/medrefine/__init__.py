"""medrefine: turn a pre-trained segmentation network into an interactive one."""

from medrefine import _native  # noqa: F401  (fails loudly if the extension did not build)

__version__ = "0.1.0"
