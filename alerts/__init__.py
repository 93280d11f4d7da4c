"""Alert rules evaluated on bars, and their deliveries."""
