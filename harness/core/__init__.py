"""Core: one configuration -> one measured record.

Config and suites, data, devices, precision, optimizers, determinism, the training step, the
timed loop and the runner that assembles a record. Imports only ``harness.probes``, ``models``
and the foundation (``harness.schema``, ``harness.errors``). See docs/architecture.md.
"""
