"""carbontrack-amdsmi: a carbontrack backend for AMD GPUs, through ROCm's amdsmi bindings.

Install it next to carbontrack and it is used automatically (entry point ``amdsmi`` in the group
``carbontrack``). The hooks are in ``carbontrack_amdsmi.plugin``; a fake ``amdsmi`` module for
tests is in ``carbontrack_amdsmi.testing``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
