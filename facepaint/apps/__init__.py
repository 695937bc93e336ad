"""The ways users reach the editor: the `facepaint` command and the web app.

They also resolve the release an app serves. Imports everything below it; the only layer that may reach the
orchestration (`tracking`, lazily, for a registered release).

Gradio's analytics are off: with GRADIO_ANALYTICS_ENABLED unset, a Gradio app posts usage events to
api.gradio.app and checks for a newer version there when it launches. Gradio reads the variable when a Blocks is
built and launched, so it is set here, before the web app imports gradio; a user's own setting wins.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
