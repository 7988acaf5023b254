"""The ``lakehouse`` command-line interface."""
