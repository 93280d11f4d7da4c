"""Users, roles and API authentication."""
