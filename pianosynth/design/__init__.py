"""Coefficient design from physical parameters (numpy/scipy, never in the audio path)."""
