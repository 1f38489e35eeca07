"""Learning across images: accepted masks teach a site head that new sessions start from.

A clinician who accepts a mask has labelled every pixel of it. A :class:`Site` (one hospital,
scanner or study, for one model) keeps a bounded sample of each accepted image's feature rows and
labels (never the image), fine-tunes the network's head on all of them, and lets new sessions
start from that head only where an image-held-out check says it beats the network's own.

``config`` the settings; ``samples`` what is kept of an accepted image; ``fit`` the site head;
``validate`` the held-out check; ``store`` memory and SQLite storage; ``site`` the facade.
"""

from medrefine.engine.session.sites import SiteHead, SiteStart
from medrefine.records import SiteReport, SiteVersion, Validation
from medrefine.site.config import SiteConfig
from medrefine.site.site import Site

__all__ = [
    "Site",
    "SiteConfig",
    "SiteHead",
    "SiteReport",
    "SiteStart",
    "SiteVersion",
    "Validation",
]
