"""Choosing an engine and a model from the user's options, and saying why."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.engines.base import Engine
from engine.engines.embedded_model import EMBEDDED_NAME, embedded_model_dir, is_prepared, prepare
from engine.types import BadRequestError

ENGINES = ("vllm", "openai")
ARTICLE_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"


@dataclass(frozen=True)
class EngineChoice:
    engine: Engine
    model_label: str  # what to show: the embedded model's name, or what the user gave
    reason: str  # why this model, in one line


def _looks_like_path(model: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else with a slash is a path."""
    return model.startswith(("/", "./", "../", "~", ".")) or model.count("/") > 1


def resolve_model(model: str | None, log=lambda _m: None, download: bool = True) -> tuple[str, str, str]:
    """(what vLLM loads, label to show, why). A hub id is its snapshot folder in the local Hugging Face
    cache, downloaded first when it is not there (engine.engines.hub: HubError, one line, when it cannot
    be). download=False (the app's check before its first frame) fetches nothing and returns the id."""
    if not model or model == "embedded":
        if not is_prepared():
            prepare(log=log)
        return (
            str(embedded_model_dir()),
            EMBEDDED_NAME,
            f"no --model given: the embedded {EMBEDDED_NAME} (offline, runs on CPU); "
            f"on a GPU try --model {ARTICLE_MODEL} as in the article",
        )
    expanded = os.path.expanduser(model)
    if Path(expanded).exists():
        if not Path(expanded).is_dir():
            raise BadRequestError(f"--model {model} is a file; pass a model folder (with config.json) or a hub id")
        if not (Path(expanded) / "config.json").is_file():
            raise BadRequestError(f"--model {model} has no config.json: pass a Hugging Face model folder")
        return str(Path(expanded).resolve()), model, "--model: a local folder"
    if _looks_like_path(model):
        raise BadRequestError(f"model path {model} does not exist: pass an existing folder, a hub id, or omit --model")
    # A hub id: its snapshot folder, so vLLM loads a local folder and never asks the hub itself.
    from engine.engines.hub import ensure_model

    folder, why = ensure_model(model, log=log, download_now=download)
    return (str(folder) if folder is not None else model), model, why


def check_engine_choice(engine: str | None, endpoint: str | None) -> None:
    """The rules between --engine and --endpoint, the one copy make_engine and the app's first check
    (check_engine_options) both apply: BadRequestError, one line, when they do not fit."""
    if engine not in ENGINES:
        raise BadRequestError(f"--engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    if engine == "openai" and not endpoint:
        raise BadRequestError("--engine openai needs --endpoint URL (e.g. http://127.0.0.1:8000)")
    if engine == "vllm" and endpoint:
        raise BadRequestError("--endpoint is for --engine openai; drop it or add --engine openai")


def check_engine_options(options: dict) -> None:
    """Cheap checks of make_engine's options (a dict of its keyword arguments) before anything starts:
    the engine and endpoint, a tokenizer and a model that exist or are hub ids. Nothing is downloaded
    (a hub id is fetched as the engine starts). BadRequestError / HubError: one line."""
    engine = options.get("engine")
    check_engine_choice(engine, options.get("endpoint"))
    if options.get("tokenizer"):
        from engine.engines.hub import ensure_tokenizer

        ensure_tokenizer(options["tokenizer"], download_now=False)
    model = options.get("model")
    if engine == "vllm" and model and model != "embedded":
        resolve_model(model, download=False)  # a missing path, or offline; a hub id downloads at start


def make_engine(
    engine: str = "vllm",
    *,
    model: str | None = None,
    endpoint: str | None = None,
    api: str = "chat",
    tokenizer: str | None = None,
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    extra_args: dict | None = None,
    log=lambda _m: None,
) -> EngineChoice:
    check_engine_choice(engine, endpoint)
    if engine == "openai":
        assert endpoint is not None  # check_engine_choice: --engine openai needs --endpoint
        from engine.engines.openai_engine import OpenAIEngine

        eng = OpenAIEngine(endpoint, model, api=api, tokenizer=tokenizer)
        return EngineChoice(eng, model or "(served model)", f"the model served at {eng.base_url}")
    from engine.engines.vllm_engine import VllmEngine

    path, label, reason = resolve_model(model, log=log)
    if tokenizer:  # vLLM's own --tokenizer: a local folder, a cached hub id, else downloaded (engine.engines.hub)
        from engine.engines.hub import ensure_tokenizer

        folder = ensure_tokenizer(tokenizer, log=log)
        extra_args = {**(extra_args or {}), "tokenizer": str(folder)}
    return EngineChoice(
        VllmEngine(
            path,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            extra_args=extra_args,
        ),
        label,
        reason,
    )
