"""Plumbing shared by every layer: crash-safe files, distributed collectives, devices."""
