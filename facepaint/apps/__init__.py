"""The ways users reach the editor: the `facepaint` command and the web app.

They also resolve the release an app serves. Imports everything below it; the only layer that may reach the
orchestration (`tracking`, lazily, for a registered release).
"""
