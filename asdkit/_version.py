"""The package version (its own module, so that no submodule imports the package)."""
__version__ = "0.1.0"
