"""Engines decide how many texts run where: in this process (local) or on a Ray cluster."""
