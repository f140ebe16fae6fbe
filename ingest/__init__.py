"""Ingest: source contracts, the synthetic event generator, the landing function and the Pub/Sub path."""
