"""Bridges to other training engines (optional extras; nothing here is imported by the core package)."""
