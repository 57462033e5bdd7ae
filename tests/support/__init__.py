"""Helpers the tests share (not tests themselves): one fake OpenAI-compatible server with its reply
strategies (fake_openai: scripted, replayed), the real client on its host against it and a load run stored
as the app stores it (openai_client), a pynvml test double, a loopback Hugging Face hub, stores seeded with
fixed runs, the wait-for-predicate loops, host apps, the processes tests start on loopback (loopback: the
fast SSE server, moto S3), tmux driving (tmux), and the process helpers of the serve and CLI tests.
Imported as `tests.support.<module>`."""
