"""marrow's version, in a module of its own: low layers (the worker's protocol) read it without
importing the root package, which loads the Python API (`marrow/__init__.py`)."""

__version__ = "0.1.0"
