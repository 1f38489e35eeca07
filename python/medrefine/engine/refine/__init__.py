"""The refinement loop and what it optimises.

``constraints`` (the marks as per-pixel targets), ``objective`` (the loss terms) and ``loop``
(:class:`~medrefine.engine.refine.loop.Refiner`: Algorithm 1 on the head's weights; the gradient
steps are in :meth:`~medrefine.engine.refine.loop.Refiner.run`).
"""
