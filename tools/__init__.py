"""Tools around the method: the demo dataset generator."""
