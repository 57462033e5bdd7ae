"""PromptSource: the tests' shorthand for a load's prompts (moved out of engine.load.runner, issue 22
step 7: no product code called it). Synthetic random-token prompts of `input_len` tokens (vLLM's
random dataset, engine.workloads.synthetic.RandomWorkload), or a suite's prompts cycled
(SuiteWorkload): the workloads `tokentop load` had before datasets."""

from __future__ import annotations

from collections.abc import Sequence

from engine.types import GenerationRequest
from engine.workloads.base import DEFAULT_TEMPERATURE, Workload
from engine.workloads.synthetic import RandomWorkload, SuiteWorkload


def PromptSource(input_len: int | None = None, output_len: int | None = None,
                 suite_requests: Sequence[GenerationRequest] = (), suite_name: str | None = None,
                 temperature: float = DEFAULT_TEMPERATURE, seed: int = 0) -> Workload:
    """A Workload: SuiteWorkload over `suite_requests` when given (named `suite_name`, default "suite"),
    else RandomWorkload(input_len or 128, output_len or 128) with `temperature` and `seed`."""
    if suite_requests:
        return SuiteWorkload(tuple(suite_requests), suite_name or "suite", output_len=output_len, seed=seed)
    return RandomWorkload(input_len or 128, output_len or 128, temperature=temperature, seed=seed)
