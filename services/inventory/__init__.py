"""Inventory: managed servers, their components, admin settings and identity."""
