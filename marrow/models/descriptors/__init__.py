"""One `ModelDescriptor` per model family, in light modules (no numpy or pandas) so that the CLI's
help and `ModelSpec` validation read them without importing the implementations beside them
(`marrow/models/<family>.py`). `marrow/models/registry.py` registers them."""
