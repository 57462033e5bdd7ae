"""Workloads: where a run's requests come from (suites, synthetic prompts, datasets, traces, conversations)."""
