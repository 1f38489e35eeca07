"""Where the adapted head may change the mask, and how far a correction reaches.

``plan`` (the gate of one refine: spatial, feature or adaptive; the loop settings it implies),
``distance`` (Euclidean and geodesic distance maps), ``propagate`` (a new class's logits fused
with its distance to its marks), ``appearance`` (the colour model that fusion may use), ``reach``
(the reach rule: unmarked classes change only within the gate's reach).
"""
