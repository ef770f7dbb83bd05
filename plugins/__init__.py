"""Built-in report modules (M2 to M6), installed as ``zerosite.modules``."""
