"""`python -m marrow.worker`: run a worker in the foreground (`marrow worker start` runs it detached)."""

import atexit
import os
import sys

from marrow.worker.server import main

if __name__ == "__main__":
    code = main()
    # Tearing down the modules of PyMC, numba and nutpie at exit takes seconds (so `marrow worker stop`
    # would wait for it) and frees nothing the OS does not: run the exit handlers, then leave.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
