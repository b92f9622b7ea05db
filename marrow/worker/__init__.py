"""A resident marrow process that keeps PyMC imported and compiled models in memory between commands.

`marrow worker start` runs `python -m marrow.worker` in the background; every later `marrow fit`,
`summarize`, ... sends its command line to it over a Unix socket (`client.delegate`) instead of
importing PyMC and compiling again, and prints what it returns. See docs/worker.md.

Modules: `protocol` (wire format, socket location; stdlib only), `client` (stdlib only: imported by
every `marrow` command), `server` (the worker itself).
"""
