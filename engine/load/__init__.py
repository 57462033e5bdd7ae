"""Load levels driven on the engine's own event loop, timed exactly like `vllm bench serve`.

The package in layers, each importing only those below it (an import-linter contract in
pyproject.toml keeps it so; they import each other by their own names, never through this file):

  runner.py    LoadRunner: a level's warm-ups, prefix-cache reset, driving, draining and figures; the
               sweep and its stop rules
  pool.py      client processes (`--client-processes N`): a level shared among worker processes,
               each driving its share with driver.drive
  driver.py    `drive`, the one driver of a level, and what it fills (LiveLoad, LevelOutcome)
  summary.py   a level's figures: vLLM's aggregates, goodput under SLOs, what tokentop adds
  patterns.py  LoadLevel and its send offsets: fixed concurrency, request rate with burstiness, a trace

This module only re-exports the names code outside the package imports.
"""

from engine.load.driver import LevelOutcome, LiveLoad
from engine.load.patterns import LoadLevel, arrival_offsets, default_num_prompts, poisson_fit, sweep_levels
from engine.load.runner import LoadRunner, engine_tokens, sweep_verdict
from engine.load.summary import goodput_count, parse_slo, summarise_level

__all__ = [
    "LevelOutcome",
    "LiveLoad",
    "LoadLevel",
    "LoadRunner",
    "arrival_offsets",
    "default_num_prompts",
    "engine_tokens",
    "goodput_count",
    "parse_slo",
    "poisson_fit",
    "summarise_level",
    "sweep_levels",
    "sweep_verdict",
]
