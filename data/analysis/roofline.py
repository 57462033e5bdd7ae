"""The batch-1 decode roofline of a run: its GPU's bandwidth (the bundled GPU specs) over the bytes its
model reads per token (engine.telemetry.roofline), for `bench`, `load`, `show` and the run-detail
screen."""

from __future__ import annotations

from typing import Any

from data.paths import assets_dir


def gpu_specs_path():
    return assets_dir() / "gpu_specs.toml"


def roofline_for(environment: dict[str, Any], engine_description: dict[str, Any]) -> dict[str, Any] | None:
    """The batch-1 decode ceiling for the run's GPU(s) and model, or None (roofline_why_not says why)."""
    return _roofline(environment, engine_description)[0]


def roofline_why_not(environment: dict[str, Any], engine_description: dict[str, Any]) -> str | None:
    """A plain line on why there is no ceiling (not cached, no GPU, unknown GPU), or None when there is one."""
    return _roofline(environment, engine_description)[1]


def _roofline(environment: dict[str, Any],
              engine_description: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    from engine.telemetry.roofline import decode_ceiling, load_gpu_specs, resolve_weights

    gpus = environment.get("gpus_used") or environment.get("gpus") or []
    key = gpus[0].get("key") if gpus else None
    if not gpus:
        return None, f"this run used no GPU ({environment.get('device') or 'CPU'})"
    if not key:
        return None, f"no bandwidth figure for {gpus[0].get('name') or 'this GPU'} in the GPU specs"
    spec = load_gpu_specs(gpu_specs_path()).get(key)
    if spec is None:
        return None, f"no bandwidth figure for {key} in the GPU specs"
    path = environment.get("model_path") or engine_description.get("model")
    weights, why = resolve_weights(path, dtype=engine_description.get("dtype"))
    if weights is None:
        return None, why
    args = engine_description.get("engine_args") or {}
    roof = decode_ceiling(spec, weights, tensor_parallel=int(args.get("tensor_parallel_size") or 1))
    out = roof.to_dict()
    out["weights_from"] = weights.how
    out["weights_notes"] = list(weights.notes)
    out["source"] = spec.source
    return out, None


def roofline_with_share(environment: dict[str, Any], engine_description: dict[str, Any],
                        summary: dict[str, Any]) -> dict[str, Any] | None:
    """The batch-1 ceiling plus each case's decode rate (1000/TPOT) as a share of it."""
    roof = roofline_for(environment, engine_description)
    if not roof:
        return None
    ceiling = roof.get("ceiling_tok_s") or 0
    roof["decode_pct_of_ceiling"] = {
        case: (100.0 * agg["mean_decode_rate"] / ceiling) if ceiling and agg.get("mean_decode_rate") else None
        for case, agg in (summary.get("cases") or {}).items()
    }
    return roof


def stored_run_roofline(run: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The roofline (with each case's share) of a stored run, from what the run row keeps, or None
    and why not."""
    env = run.get("environment") or {}
    desc = {"model": env.get("model_path") or run.get("model"), "dtype": run.get("dtype"),
            "engine_args": run.get("engine_args") or {}}
    try:
        roof = roofline_with_share(env, desc, run.get("summary") or {})
        return roof, None if roof else roofline_why_not(env, desc)
    except Exception as exc:  # a stored run from another machine may name a model that is not here
        return None, f"{type(exc).__name__}: {exc}"


def roofline_text(roof: dict[str, Any] | None, device: str | None = None, why: str | None = None) -> list[str]:
    """The roofline in words, the same for `bench`, `load`, `show` and the run-detail screen: the
    batch-1 decode ceiling, then each case's (or level's) decode rate as a share of it."""
    if not roof:
        why = why or f"no bandwidth figure or weights for {device or 'this device'}"
        return [f"no batch-1 ceiling: {why}"]
    lines = [f"batch-1 decode ceiling on {roof['gpu']} = {roof['ceiling_tok_s']:.0f} tok/s "
             f"({roof['bandwidth_tb_s']:.2f} TB/s / {roof['bytes_per_token_gb']:.2f} GB read per token"
             + (f", weights from {roof['weights_from']})" if roof.get("weights_from") else ")")]
    shares = ", ".join(f"{case} {pct:.0f} %" for case, pct in (roof.get("decode_pct_of_ceiling") or {}).items()
                       if pct is not None)
    if shares:
        lines.append(f"decode rate (1000/TPOT) as a share of it: {shares}")
    return lines
