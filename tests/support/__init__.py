"""Helpers the tests share (not tests themselves): one fake OpenAI-compatible server with its reply
strategies (fake_openai: scripted, replayed), a pynvml test double, a loopback Hugging Face hub, stores
seeded with fixed runs, the one wait-for-predicate loop, host apps, and the process helpers of the serve
and CLI tests. Imported as `tests.support.<module>`."""
