"""Telemetry: GPU (NVML), server (/metrics, stat loggers), the machine a run ran on, and the roofline."""
