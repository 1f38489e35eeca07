"""The browser viewer's built files (``index.html``, ``viewer.js``, ``viewer.css``), served by
``medrefine serve --web``. Built from ``web/`` by ``web/build.py``; do not edit them here."""
