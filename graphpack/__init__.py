"""graphpack: MLRun-style serving graphs, tested in-process, shipped as Nuclio/Knative functions."""

__version__ = "0.1.0"
