"""Measurement: vLLM's metric definitions, live gauges, and the client's check on itself."""
