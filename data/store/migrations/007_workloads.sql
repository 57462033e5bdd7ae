-- The workload is part of a run's identity (issue 16): what its requests were, so runs on different
-- workloads are never averaged together. `workload` is engine.workloads' identity: kind (random,
-- prefix_repetition, sharegpt, custom, timed_trace, mooncake_trace, suite, interactive), the dataset
-- file (name, sha256, bytes), sampling and length parameters, seed; `workload_key` names it (a hash of
-- the identity without the seed) and `workload_label` says it in words.
ALTER TABLE runs ADD COLUMN workload JSON;
ALTER TABLE runs ADD COLUMN workload_key VARCHAR;
ALTER TABLE runs ADD COLUMN workload_label VARCHAR;

-- Per request: its conversation and turn (multi-turn workloads), the prompt length the workload asked
-- for beside the engine's own count (input_tokens), the prompt tokens served from the prefix cache,
-- and how the prompt reached the model (ids | text | chat: wrapped in the chat template).
ALTER TABLE requests ADD COLUMN conversation_id INTEGER;
ALTER TABLE requests ADD COLUMN turn_index INTEGER;
ALTER TABLE requests ADD COLUMN target_input_tokens INTEGER;
ALTER TABLE requests ADD COLUMN cached_tokens INTEGER;
ALTER TABLE requests ADD COLUMN prompt_form VARCHAR;
