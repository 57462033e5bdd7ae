"""One module per provider. Each exposes ``async fetch(client, *, env, now, timeout) -> FetchResult``
(CoreWeave, which has no pricing API, exposes ``rows_from_table``)."""
