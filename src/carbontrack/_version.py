"""The version of carbontrack, in one place for hatch and the package."""

__version__ = "0.1.0.dev0"
