"""packs of wasp."""
