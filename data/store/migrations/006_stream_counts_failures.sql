-- How each request's tokens were counted, its first content, how it ended, how it failed, and what the
-- user of a loaded service waits; per run, its failures and whether its token counts are estimates.
ALTER TABLE requests ADD COLUMN token_count_source VARCHAR;    -- usage | engine | usage+tokenizer | usage+spread | tokenizer | events (engine/measure/tokens.py)
ALTER TABLE requests ADD COLUMN ttfc_ms DOUBLE;                -- time to first content: first chunk with text or reasoning - send (TTFT counts any chunk)
ALTER TABLE requests ADD COLUMN first_chunk_empty BOOLEAN;     -- the first chunk (TTFT's) carried no text or reasoning (a role-only event)
ALTER TABLE requests ADD COLUMN asked_tokens INTEGER;          -- the length the request enforced (min_tokens = max_tokens); NULL when not enforced
ALTER TABLE requests ADD COLUMN stopped_early BOOLEAN;         -- enforced, succeeded, and got fewer tokens than asked (output_tokens < asked_tokens)
ALTER TABLE requests ADD COLUMN error_kind VARCHAR;            -- failed: http | stream | timeout | connection | no output | aborted | engine | other
ALTER TABLE requests ADD COLUMN http_status INTEGER;           -- the HTTP status of a failed request (error_kind http)
ALTER TABLE requests ADD COLUMN schedule_to_finish_ms DOUBLE;  -- load: last chunk - scheduled send (client queue included; vLLM #54101)

ALTER TABLE runs ADD COLUMN failed_requests INTEGER;           -- from the summary's overall figures, when the run ends
ALTER TABLE runs ADD COLUMN failure_rate DOUBLE;               -- failed / requests (NULL for a run without requests)
ALTER TABLE runs ADD COLUMN failures_by_kind JSON;             -- {"HTTP 503": 3, "error in stream": 1, ...}
ALTER TABLE runs ADD COLUMN stopped_early INTEGER;             -- requests that got fewer tokens than they enforced
ALTER TABLE runs ADD COLUMN token_count_source VARCHAR;        -- the requests' source, or several joined with ", "
ALTER TABLE runs ADD COLUMN output_tokens_estimated BOOLEAN;   -- some output token count is tokentop's estimate (no usage from the server)
