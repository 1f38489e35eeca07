"""Head evaluation: running the network's head over one image's cached features.

``runner`` (:class:`~medrefine.engine.head.runner.HeadRunner`: the whole image, or only the
pixels the loss needs), ``pointwise`` (a head that acts pixel by pixel, evaluated on feature rows),
``crop``, ``crop_eval`` and ``crop_stages`` (a head with a finite receptive field, evaluated on
windows around the pixels it needs), ``checks`` and ``verdict`` (the numerical checks that choose
among those and the verdicts kept per head and shape), ``rows`` (features as one row per pixel),
``threads`` (one thread for the small evaluations of the loop).
"""
