"""The web app (``hardnet-app``): the classifiers, detectors and segmenters here in a browser, through the same
loading, inference and drawing code as the command-line tools. Needs the ``[app]`` extra (Gradio)."""
