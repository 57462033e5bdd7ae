-- Runs, their requests and every streamed chunk's arrival time.
CREATE TABLE runs (
    run_id        VARCHAR PRIMARY KEY,
    kind          VARCHAR NOT NULL,          -- suite | interactive | load
    status        VARCHAR NOT NULL,          -- running | completed | failed | aborted
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    duration_s    DOUBLE,
    suite         VARCHAR,                   -- suite name (seed, a file's name, interactive, load)
    suite_json    JSON,                      -- the cases and sampling settings as run
    reps          INTEGER,
    engine        VARCHAR NOT NULL,          -- vllm | openai
    engine_args   JSON,
    model         VARCHAR,
    dtype         VARCHAR,
    hostname      VARCHAR,
    pid           INTEGER,                   -- to mark runs of crashed processes as aborted
    device        VARCHAR,                   -- GPU name, or "CPU"
    gpu_key       VARCHAR,                   -- canonical GPU key (H100-SXM-80), NULL on CPU
    gpu_count     INTEGER,
    gpu_memory_mb BIGINT,
    driver        VARCHAR,
    environment   JSON,                      -- everything collected about the machine and versions
    summary       JSON,                      -- per-case aggregates (vLLM metric names), filled at the end
    error         VARCHAR,
    label         VARCHAR
);

CREATE TABLE requests (
    run_id         VARCHAR NOT NULL,
    request_index  INTEGER NOT NULL,         -- order of sending within the run
    case_id        VARCHAR,                  -- short / medium / long / interactive / load level
    rep            INTEGER,
    sent_at        TIMESTAMPTZ,              -- wall clock when sent
    send_offset_s  DOUBLE,                   -- perf_counter offset from the run's start
    prompt         VARCHAR,
    input_tokens   INTEGER,
    output_tokens  INTEGER,
    target_tokens  INTEGER,
    ttft_ms        DOUBLE,
    e2el_ms        DOUBLE,
    tpot_ms        DOUBLE,
    tps            DOUBLE,                   -- output tokens / E2EL (the article's batch-1 TPS)
    success        BOOLEAN NOT NULL,
    finish_reason  VARCHAR,
    error          VARCHAR,
    output_text    VARCHAR,
    PRIMARY KEY (run_id, request_index)
);

CREATE TABLE chunks (
    run_id         VARCHAR NOT NULL,
    request_index  INTEGER NOT NULL,
    chunk_index    INTEGER NOT NULL,
    t_ns           BIGINT NOT NULL,          -- arrival, ns after the request was sent
    tokens         INTEGER NOT NULL          -- tokens this chunk carried (0 for an empty first chunk)
);
