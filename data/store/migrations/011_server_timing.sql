-- The server's own timing of each request (issue 21): vLLM's per-request `metrics` on the final stream
-- event (`vllm serve --enable-per-request-metrics`), or the in-process engine's RequestOutput.metrics.
-- vLLM's definitions (vllm/entrypoints/generate/base/serving.py: build_per_request_timing_metrics):
-- server_ttft_ms = time_to_first_token_ms, scheduled -> first token (the queue NOT included);
-- server_queue_time_ms = queue_time_ms, queued -> scheduled; server_generation_time_ms = first -> last
-- token; server_mean_itl_ms; server_tokens_per_second = output tokens / (scheduled -> last token).
-- Speculative decoding (SpeculativeDecodingMetrics): draft acceptance rate, mean acceptance length
-- (bonus token included), accepted and drafted tokens, verify steps. NULL where the server gave none.
ALTER TABLE requests ADD COLUMN server_ttft_ms DOUBLE;
ALTER TABLE requests ADD COLUMN server_queue_time_ms DOUBLE;
ALTER TABLE requests ADD COLUMN server_generation_time_ms DOUBLE;
ALTER TABLE requests ADD COLUMN server_mean_itl_ms DOUBLE;
ALTER TABLE requests ADD COLUMN server_tokens_per_second DOUBLE;
ALTER TABLE requests ADD COLUMN server_timing_source VARCHAR;
ALTER TABLE requests ADD COLUMN spec_acceptance_rate DOUBLE;
ALTER TABLE requests ADD COLUMN spec_acceptance_length DOUBLE;
ALTER TABLE requests ADD COLUMN spec_accepted_tokens INTEGER;
ALTER TABLE requests ADD COLUMN spec_draft_tokens INTEGER;
ALTER TABLE requests ADD COLUMN spec_steps INTEGER;
