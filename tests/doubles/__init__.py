"""Test doubles of outside services, serving their real wire formats on loopback."""
