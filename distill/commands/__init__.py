"""One Click command a module; `distill.cli` registers them lazily."""
