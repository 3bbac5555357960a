"""collectors of wasp."""
