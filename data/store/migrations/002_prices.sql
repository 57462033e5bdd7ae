-- GPU prices: every fetch is kept (history, offline use), plus one status row per provider per attempt.
CREATE TABLE price_fetches (
    fetch_id      VARCHAR NOT NULL,          -- one refresh (all providers)
    provider      VARCHAR NOT NULL,          -- runpod | vastai | lambda | vultr | coreweave
    attempted_at  TIMESTAMPTZ NOT NULL,
    ok            BOOLEAN NOT NULL,
    source        VARCHAR,                   -- live | catalog | snapshot (of the rows this attempt gave)
    reason        VARCHAR,                   -- one line: why it failed, or what was skipped
    rows          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (fetch_id, provider)
);

CREATE TABLE prices (
    fetch_id          VARCHAR NOT NULL,
    provider          VARCHAR NOT NULL,
    gpu_key           VARCHAR,               -- canonical key (H100-SXM-80); NULL = unmatched name
    gpu_raw_name      VARCHAR NOT NULL,      -- as the provider wrote it
    approximate       BOOLEAN NOT NULL,      -- the source dropped the form factor / memory
    gpu_count         INTEGER NOT NULL,
    usd_per_hour      DOUBLE NOT NULL,       -- whole instance
    usd_per_gpu_hour  DOUBLE NOT NULL,
    pricing_type      VARCHAR NOT NULL,      -- on-demand | spot
    region            VARCHAR,
    instance_type     VARCHAR,
    stat              VARCHAR,               -- marketplaces: min | median over `offers` offers
    offers            INTEGER,
    note              VARCHAR,
    source            VARCHAR NOT NULL,      -- live | catalog | snapshot
    fetched_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX prices_provider_time ON prices (provider, fetched_at);
