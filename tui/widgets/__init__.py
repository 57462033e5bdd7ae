"""Widgets of the tokentop app."""
