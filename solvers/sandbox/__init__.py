"""Sandbox internals of `solvers.executor`: Python-level policy, OS-level lockdown, the worker."""
