"""Helpers the tests share (not tests themselves): scripted OpenAI-compatible servers (sse_script,
sse_replay), a pynvml test double, a loopback Hugging Face hub, stores seeded with fixed runs, and the
process helpers of the serve and CLI tests. Imported as `tests.support.<module>`."""
