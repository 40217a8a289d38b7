"""Engines behind one interface per capability: CPU defaults and neural ones."""
