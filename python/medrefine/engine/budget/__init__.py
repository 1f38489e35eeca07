"""What an image may cost, and keeping a session within it.

``limits`` (:class:`~medrefine.engine.budget.limits.SessionLimits`: sizes, counts, bytes),
``cost`` and ``admission`` (the memory a set_image needs, estimated and admitted or refused before
the backbone runs), ``features`` (the backbone's features within those bytes: whole, by slabs or
tiles, float16 when large), ``cache`` (:class:`~medrefine.engine.budget.cache.FeatureCache`:
features per image, bounded), ``heap`` (freed memory given back to the system).
"""
