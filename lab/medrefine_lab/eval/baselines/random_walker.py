"""Random walker (Grady 2006) from scikit-image, 2D and small 3D.

Each pixel takes the seeded class whose seeds a random walker started there most probably reaches
first; edge weights are ``exp(-beta * dI^2)`` on the normalised image (scikit-image divides
``beta`` by ``10 * std(image)``). ``beta = 3000`` per the protocol notes (the default 130 leaks
across edges).

Solver (neither needs pyamg): with ``beta = 3000`` the Laplacian is badly conditioned (edge
weights span many orders of magnitude), so conjugate gradient is slow and inaccurate in 2D
(measured: 512^2 noisy disk, ``cg_j`` at ``tol=1e-5`` took 504 s, the direct sparse solve
``bf`` 2.3 s). 2D therefore uses ``bf``. In 3D the direct solve's fill-in explodes (48^3: 215 s
and 3.5 GB), so 3D uses ``cg_j`` (conjugate gradient, Jacobi preconditioner); its approximate
probabilities may leave ``[0, 1]`` slightly, which does not matter for the argmax taken here. Cost
grows fast with size: about 100 s per call at 128^3 on 2 cores.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from skimage.segmentation import random_walker

from medrefine_lab.eval.baselines.base import SeedBaseline, SeedProblem


@dataclass(frozen=True)
class RandomWalker(SeedBaseline):
    """scikit-image ``random_walker`` with the seeds as its labels.

    Attributes:
        beta: edge-weight sharpness (see module docstring).
        mode_2d: scikit-image solver for 2D problems (``"bf"``: direct sparse solve).
        mode_3d: scikit-image solver for 3D problems (``"cg_j"``: Jacobi-preconditioned CG).
        tol: conjugate-gradient tolerance (``cg`` modes only).
    """

    name: ClassVar[str] = "random_walker"
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)

    beta: float = 3000.0
    mode_2d: str = "bf"
    mode_3d: str = "cg_j"
    tol: float = 1e-3

    def _segment(self, problem: SeedProblem) -> NDArray[np.integer]:
        colour = problem.image.shape[0] > 1
        with warnings.catch_warnings():
            # CG's approximate probabilities can overshoot [0, 1] a little (see module
            # docstring); only their argmax is used.
            warnings.filterwarnings(
                "ignore", message="The probability range is outside", category=UserWarning
            )
            # With beta 3000 on noisy volumes CG can stop at its iteration limit; the baseline
            # then uses that approximate solution, as a user of scikit-image would.
            warnings.filterwarnings(
                "ignore", message="Conjugate gradient convergence", category=UserWarning
            )
            probability = random_walker(
                problem.image if colour else problem.image[0],
                problem.seeds,
                beta=self.beta,
                mode=self.mode_2d if problem.ndim == 2 else self.mode_3d,
                tol=self.tol,
                return_full_prob=True,
                channel_axis=0 if colour else None,
            )
        # One probability map per seeded class, in ascending order (scikit-image renumbers
        # the labels it returns, so the class is taken from this order, not from its labels).
        return np.asarray(problem.classes, dtype=np.int32)[np.argmax(probability, axis=0)]
