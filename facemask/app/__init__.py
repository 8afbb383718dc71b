"""The web app: `facemask app` (the command, __main__), the page (ui), the webcam stream (live),
the guard on what the browser sends (uploads) and the serving process's care (server).

Every module here imports gradio, which reads these two at its import: set here, before any of them, so
that the app works offline whichever of its modules is imported first (as the single app.py did).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
