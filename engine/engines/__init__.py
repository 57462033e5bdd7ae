"""Engines: the in-process vLLM engine, any OpenAI-compatible server, a managed `vllm serve`, the host thread
that runs them, and choosing one."""
