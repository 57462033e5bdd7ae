-- Runs that travel (where a run ran, what it cost, where it came from), the GPUs a run used,
-- reasoning timings, and the client's own health checks.
ALTER TABLE runs ADD COLUMN provider VARCHAR;            -- runpod | vastai | lambda | vultr | coreweave | other name; NULL = unknown
ALTER TABLE runs ADD COLUMN provider_source VARCHAR;     -- how it was known: "env RUNPOD_POD_ID", "--provider", "TOKENTOP_PROVIDER", ...
ALTER TABLE runs ADD COLUMN instance_id VARCHAR;         -- pod / instance / contract id where the provider exposes it
ALTER TABLE runs ADD COLUMN instance_type VARCHAR;       -- e.g. gpu_1x_h100_pcie, vcg-a100-1c-6g-4vram
ALTER TABLE runs ADD COLUMN region VARCHAR;
ALTER TABLE runs ADD COLUMN price_per_hour_usd DOUBLE;   -- what the user pays for the instance (--price-per-hour / TOKENTOP_PRICE_PER_HOUR)
ALTER TABLE runs ADD COLUMN gpus_used JSON;              -- [{"index", "name", "key", "memory_mb"}] the GPUs the engine was given (TP x PP, CUDA_VISIBLE_DEVICES)
ALTER TABLE runs ADD COLUMN client_health JSON;          -- event-loop lag, send lag, queue wait, chunks vs tokens, warnings
ALTER TABLE runs ADD COLUMN origin VARCHAR;              -- NULL/"local" = measured here; "import:<file>" or "pull:<remote>"
ALTER TABLE runs ADD COLUMN imported_at TIMESTAMPTZ;

ALTER TABLE requests ADD COLUMN ttfo_ms DOUBLE;          -- time to first output (answer) token; = ttft_ms when there is no reasoning
ALTER TABLE requests ADD COLUMN reasoning_tokens INTEGER; -- NULL when the response carried no reasoning
ALTER TABLE requests ADD COLUMN answer_tokens INTEGER;
ALTER TABLE requests ADD COLUMN send_lag_ms DOUBLE;      -- actual send time - scheduled send time (client lateness)
ALTER TABLE requests ADD COLUMN queue_wait_ms DOUBLE;    -- wait on the client's concurrency limit before sending (vLLM #54101)

ALTER TABLE chunks ADD COLUMN reasoning_tokens INTEGER;  -- of `tokens`, how many were reasoning (NULL = none/unknown)

-- Pushes to a remote (TOKENTOP_REMOTE / --remote): what is on which remote, and what failed and is retried.
CREATE TABLE remote_pushes (
    run_id      VARCHAR NOT NULL,
    remote      VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,                         -- pushed | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  VARCHAR,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, remote)
);
