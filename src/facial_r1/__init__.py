"""Facial-R1 reimplementation."""
