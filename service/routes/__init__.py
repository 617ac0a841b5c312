"""One module per group of routes, each exporting ``router``."""
