"""The refinement engine: the paper's method and everything that makes it safe.

``session`` (the two-phase :class:`Session`), ``refine`` (the configuration and the optimisation
loop), ``objective`` (the loss terms), ``constraints`` (marks -> per-pixel targets), ``gate`` and
``distance`` (where the adapted head may overrule the network), ``head`` and ``pointwise`` (where
and how the head is evaluated), ``cache`` (features per image), ``history`` (undo/redo states).
The engine never imports :mod:`medrefine.eval` or :mod:`medrefine.serve`.
"""
