"""The refinement engine: the paper's method and everything that makes it safe.

Subpackages, each importing only those before it: ``head`` (evaluating the head over cached
features), ``refine`` (marks -> constraints, the objective, the loop that adapts the head),
``gate`` (where the adapted head may overrule the network, propagation, the reach rule),
``budget`` (limits, memory admission, features and their cache), ``session`` (:class:`Session`
and the operations on its state). ``config`` holds :class:`RefineConfig` and its sections; every
subpackage may read it. ``Session.refine`` calls ``session.refinement``'s ``prepare``, ``fit``
(which runs :meth:`refine.loop.Refiner.run`, the gradient steps) and ``finish``.
The engine never imports :mod:`medrefine.site`, :mod:`medrefine_lab.eval` or :mod:`medrefine.serve`
(``tests/test_architecture.py``).
"""
