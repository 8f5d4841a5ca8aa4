"""trainmark's machinery: sweep configs, runner, results store, CLI."""

__version__ = "0.1.0"
