-- GPU (NVML) and server (vLLM /metrics or in-process stat loggers) samples taken during a run.
CREATE TABLE gpu_samples (
    run_id           VARCHAR NOT NULL,
    t_s              DOUBLE NOT NULL,        -- seconds after the run's start (perf_counter)
    gpu_index        INTEGER NOT NULL,
    util_pct         DOUBLE,
    mem_util_pct     DOUBLE,
    mem_used_mb      DOUBLE,
    mem_total_mb     DOUBLE,
    power_w          DOUBLE,
    power_limit_w    DOUBLE,
    temp_c           DOUBLE,
    sm_clock_mhz     DOUBLE,
    mem_clock_mhz    DOUBLE,
    energy_counter_j DOUBLE                  -- NVML total energy counter, where supported
);

CREATE TABLE server_samples (
    run_id               VARCHAR NOT NULL,
    t_s                  DOUBLE NOT NULL,    -- seconds after the run's start (perf_counter)
    source               VARCHAR NOT NULL,   -- metrics (a server's /metrics) | stat_logger (in-process)
    running              DOUBLE,
    waiting              DOUBLE,
    kv_cache_usage       DOUBLE,             -- 0..1
    prefix_cache_queries DOUBLE,             -- cumulative since the server started
    prefix_cache_hits    DOUBLE,
    preemptions          DOUBLE,
    generation_tokens    DOUBLE,
    ttft_count           DOUBLE,
    ttft_sum_s           DOUBLE,
    ttft_buckets         JSON                -- {"le": cumulative count}
);
