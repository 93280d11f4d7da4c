"""Technical indicators and ML features computed from bars."""
