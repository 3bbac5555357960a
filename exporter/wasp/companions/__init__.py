"""companions of wasp."""
