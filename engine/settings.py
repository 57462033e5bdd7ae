"""tokentop's settings: every ``TOKENTOP_*`` environment variable, declared once.

Each field of `Settings` is one variable: its name, type, default and what it does are in the field's
metadata (``env``, ``help``) and in the table below; `settings()` reads them. Nothing else in engine/,
pricing/, data/ or tui/ reads a ``TOKENTOP_*`` variable itself.

    variable                     field               type        default                      what it does
    TOKENTOP_DATA_DIR            data_dir            str | None  platformdirs user data dir   the database's directory
    TOKENTOP_DB                  db                  str | None  <data dir>/tokentop.duckdb   the DuckDB file (--db)
    TOKENTOP_CACHE_DIR           cache_dir           str | None  platformdirs user cache dir  embedded model, vLLM cache
    TOKENTOP_REMOTE              remote              str | None  none                         push each finished run
    TOKENTOP_PUSH_EXIT_WAIT_S    push_exit_wait_s    float       30                           wait at exit for pushes
    TOKENTOP_PROVIDER            provider            str | None  detected                     GPU cloud (--provider)
    TOKENTOP_PRICE_PER_HOUR      price_per_hour      str | None  none                         USD/h (--price-per-hour)
    TOKENTOP_RUNPOD_URL          runpod_url          str | None  RunPod's API                 base URL (proxy, tests)
    TOKENTOP_VASTAI_URL          vastai_url          str | None  Vast.ai's API                base URL
    TOKENTOP_VULTR_URL           vultr_url           str | None  Vultr's API                  base URL
    TOKENTOP_LAMBDA_URL          lambda_url          str | None  Lambda's API                 base URL
    TOKENTOP_LAMBDA_CATALOG_URL  lambda_catalog_url  str | None  SkyPilot's lambda vms.csv    keyless Lambda catalog

Rules, as each variable was read before it was declared here: an empty value is the same as an unset one
(None). Text values are kept as given (no stripping); the reader that uses one validates it and names the
variable in its one-line error (TOKENTOP_PROVIDER and TOKENTOP_PRICE_PER_HOUR raise LocationError in
engine.telemetry.environment.location, only when a run's location is collected, so a bad price never stops
`tokentop runs`). TOKENTOP_PUSH_EXIT_WAIT_S that is not a number is the default, 30.

Read once: `settings()` parses the variables of the environment it is given (os.environ by default) and keeps
the result, keyed by the ``TOKENTOP_*`` items it saw, so a process reads each value once while a test that
sets a variable (monkeypatch.setenv) or a caller that passes its own mapping gets the new value.
`cache_clear()` drops what was kept.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

PREFIX = "TOKENTOP_"
PUSH_EXIT_WAIT_DEFAULT_S = 30.0


def _var(env: str, help: str, default: Any = None) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """The ``TOKENTOP_*`` variables, parsed (see the module docstring for each one's rules)."""

    data_dir: str | None = _var("TOKENTOP_DATA_DIR", "directory for tokentop's data (default: the user data dir)")
    db: str | None = _var("TOKENTOP_DB", "the DuckDB file, as --db (default: tokentop.duckdb in the data dir)")
    cache_dir: str | None = _var("TOKENTOP_CACHE_DIR", "the converted embedded model, vLLM's cache and temp files")
    remote: str | None = _var("TOKENTOP_REMOTE", "a directory or s3://BUCKET/PREFIX: every finished run is pushed")
    push_exit_wait_s: float = _var("TOKENTOP_PUSH_EXIT_WAIT_S",
                                   "seconds a command waits at exit for pushes in flight (not a number: 30)",
                                   PUSH_EXIT_WAIT_DEFAULT_S)
    provider: str | None = _var("TOKENTOP_PROVIDER", "the GPU cloud this machine is rented from, as --provider")
    price_per_hour: str | None = _var("TOKENTOP_PRICE_PER_HOUR", "US dollars per hour paid, as --price-per-hour")
    runpod_url: str | None = _var("TOKENTOP_RUNPOD_URL", "RunPod's API base URL (proxy, mirror, tests)")
    vastai_url: str | None = _var("TOKENTOP_VASTAI_URL", "Vast.ai's API base URL (proxy, mirror, tests)")
    vultr_url: str | None = _var("TOKENTOP_VULTR_URL", "Vultr's API base URL (proxy, mirror, tests)")
    lambda_url: str | None = _var("TOKENTOP_LAMBDA_URL", "Lambda's API base URL (proxy, mirror, tests)")
    lambda_catalog_url: str | None = _var("TOKENTOP_LAMBDA_CATALOG_URL",
                                          "the public Lambda catalog read without a key (SkyPilot's vms.csv)")

    @classmethod
    def variables(cls) -> dict[str, str]:
        """{variable name: field name} for every declared variable."""
        return {f.metadata["env"]: f.name for f in fields(cls)}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse the declared variables out of `env` (any mapping; never raises)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"]) or None
            if f.name == "push_exit_wait_s":
                try:
                    values[f.name] = float(raw if raw is not None else PUSH_EXIT_WAIT_DEFAULT_S)
                except ValueError:
                    values[f.name] = PUSH_EXIT_WAIT_DEFAULT_S
            else:
                values[f.name] = raw
        return cls(**values)


@functools.lru_cache(maxsize=16)
def _parsed(items: tuple[tuple[str, str], ...]) -> Settings:
    return Settings.from_env(dict(items))


def settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings of `env` (default: os.environ), parsed once per distinct set of ``TOKENTOP_*`` values."""
    env = os.environ if env is None else env
    return _parsed(tuple(sorted((k, v) for k, v in env.items() if k.startswith(PREFIX))))


def cache_clear() -> None:
    """Forget every parsed environment (the next `settings()` reads the variables again)."""
    _parsed.cache_clear()
