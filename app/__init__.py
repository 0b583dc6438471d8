"""Hookscope: a self-hosted webhook inspector."""

__version__ = "0.1.0"
