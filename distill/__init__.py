"""distill: distil math reasoning (CoT, PoT, EoT) from a teacher LLM into small students."""

__version__ = "0.1.0"
