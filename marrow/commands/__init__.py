"""CLI commands, one module per command family; each imports only click at the top."""
