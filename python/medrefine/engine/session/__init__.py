"""The session: its state and the operations on it.

``session`` (:class:`~medrefine.engine.session.session.Session`, which holds the state and the
lock), ``image`` (the image's state and loading it), ``refinement`` (one refine as
``prepare -> fit -> finish``), ``classes`` (adding a class, loading a state's head), ``history``
(the states undo and redo return to), ``sites`` (what a session needs of a site), ``backend``
(the backbone's runner by name: ``Session(model, backend="auto")``), ``locking``.
"""
