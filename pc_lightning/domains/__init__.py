"""Domains: each folder brings an environment, an expert, a codec and a DataModule."""
