"""Layers shared by at least two models."""
