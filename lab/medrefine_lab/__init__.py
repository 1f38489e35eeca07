"""medrefine's lab: what measures medrefine, kept out of the runtime package.

``eval`` (the deterministic simulated user of the robot-user protocol, metrics, seed baselines,
the accuracy bench and its report, the site sequence protocol), ``benchmarks`` (one module per
``medrefine bench NAME``) and ``demo`` (``medrefine demo``: a simulated user corrects a shipped
sample). Installed from the checkout's ``lab/`` folder (``pip install ./lab``); the runtime's
``medrefine`` command loads it for ``demo``, ``bench`` and ``models --evaluate``.
"""
