"""The project's tables, one module each."""
