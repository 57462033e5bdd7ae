"""Workload suites: a TOML file of cases (prompt, target output tokens) and sampling settings.

Schema (the bundled `seed` suite is an example):
    name = "my-suite"          # optional, defaults to the file's stem
    description = "..."        # optional
    reps = 10                  # repetitions of every case
    temperature = 0.8
    top_p = 1.0
    enforce_length = true      # generate exactly output_tokens (min_tokens + ignore_eos)
    [[cases]]
    id = "short"
    prompt = "..."
    output_tokens = 50

Or, instead of cases, a dataset (engine.workloads: the `load` command's options under their names, `name`
and `path` short for dataset_name and dataset_path; a relative path is found beside the TOML file):
    [dataset]
    name = "sharegpt"          # sharegpt | custom | random | prefix_repetition | timed_trace | mooncake_trace
    path = "ShareGPT_V3.json"
    num_prompts = 20           # requests per repetition under `tokentop bench` / the Suite screen
    output_len = 128           # optional, as --output-len
A dataset suite runs its sampled prompts one at a time (every repetition sends them all again);
under `tokentop load --suite FILE` (or the Load screen) the dataset is the load's workload.
Multi-turn and trace datasets run under load only.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.types import BadRequestError, GenerationRequest

DEFAULT_DATASET_PROMPTS = 10


@dataclass(frozen=True)
class Case:
    id: str
    prompt: str
    output_tokens: int


@dataclass(frozen=True)
class Suite:
    name: str
    cases: tuple[Case, ...]
    reps: int = 10
    temperature: float = 0.8
    top_p: float = 1.0
    enforce_length: bool = True
    description: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] | None = None  # the [dataset] table: the suite's prompts come from a dataset
    _made: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the dataset's workload

    def workload(self):
        """The dataset's workload (engine.workloads), checked (its file read), or None for a suite of cases."""
        if self.dataset is None:
            return None
        if "workload" not in self._made:
            from engine.workloads import WorkloadOptions, make_workload

            options = {k: v for k, v in self.dataset.items() if k != "num_prompts"}
            opts = WorkloadOptions.from_mapping(options, where=f"suite {self.source or self.name} ")
            opts.temperature = self.temperature if opts.temperature is None else opts.temperature
            base = str(Path(self.source).parent) if self.source else None
            self._made["workload"] = make_workload(opts, base_dir=base)
        return self._made["workload"]

    @property
    def dataset_prompts(self) -> int:
        return int((self.dataset or {}).get("num_prompts") or DEFAULT_DATASET_PROMPTS)

    def workload_identity(self) -> dict[str, Any]:
        """What a run of this suite sent (stored with it): the dataset's identity, or the suite's cases."""
        workload = self.workload()
        if workload is not None:
            return workload.to_json()
        from engine.workloads.base import workload_key

        cases = [(c.id, c.prompt, c.output_tokens) for c in self.cases]
        ident: dict[str, Any] = {
            "kind": "suite",
            "params": {"suite": self.name, "cases": len(cases),
                       "cases_hash": hashlib.sha1(json.dumps(cases).encode()).hexdigest()[:12],
                       "temperature": self.temperature, "top_p": self.top_p, "ignore_eos": self.enforce_length},
            "label": f"suite {self.name}",
        }
        ident["key"] = workload_key(ident)
        return ident

    def requests(self, reps: int | None = None, tokens: Any = None) -> list[GenerationRequest]:
        """Case-major order, as the article ran it: every repetition of short, then medium, ...
        A dataset suite: its sampled prompts, every repetition sending them all again (`tokens`: the
        engine's tokenizer, engine.workloads.tokens.Tokens, for datasets that count tokens)."""
        n = self.reps if reps is None else reps
        workload = self.workload()
        if workload is not None:
            if workload.self_timed or getattr(workload, "multi_turn", False) or getattr(workload, "turns", 1) > 1:
                raise BadRequestError(f"suite {self.name}: a trace or multi-turn dataset runs under load "
                                      f"(tokentop load --suite {self.source or self.name})")
            key = f"requests-{n}"
            if key not in self._made:
                workload.prepare(tokens, self.dataset_prompts)
                sample = workload.requests(self.dataset_prompts)
                self._made[key] = [
                    GenerationRequest(prompt=r.prompt, max_tokens=r.max_tokens, temperature=self.temperature,
                                      top_p=self.top_p, enforce_length=self.enforce_length, case_id=self.cases[0].id,
                                      rep=rep * len(sample) + i, input_len=r.input_len,
                                      prompt_token_ids=r.prompt_token_ids, send_ids=r.send_ids)
                    for rep in range(n) for i, r in enumerate(sample)]
            return list(self._made[key])
        return [
            GenerationRequest(
                prompt=case.prompt,
                max_tokens=case.output_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                enforce_length=self.enforce_length,
                case_id=case.id,
                rep=rep,
            )
            for case in self.cases
            for rep in range(n)
        ]

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_made"}
        data["extra"] = dict(self.extra)
        data["cases"] = [asdict(c) for c in self.cases]
        if self.dataset is None:
            data.pop("dataset", None)
        return data


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadRequestError(f"suite file {path} does not exist: pass --suite seed or a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"cannot read suite file {path}: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadRequestError(f"suite file {path} is not valid TOML ({exc}): fix it and retry") from None
    return parse_suite(raw, default_name=path.stem, source=str(path))


def parse_suite(raw: dict[str, Any], default_name: str = "suite", source: str = "") -> Suite:
    where = source or default_name

    def bad(msg: str) -> BadRequestError:
        return BadRequestError(f"suite {where}: {msg}")

    dataset = raw.get("dataset")
    if dataset is not None:
        return _dataset_suite(raw, dataset, default_name, source, bad)
    cases_raw = raw.get("cases")
    if not isinstance(cases_raw, list) or not cases_raw:
        raise bad("needs at least one [[cases]] table with id, prompt and output_tokens, or a [dataset] table")
    cases = []
    seen = set()
    for i, c in enumerate(cases_raw):
        if not isinstance(c, dict):
            raise bad(f"case {i + 1} is not a table")
        cid = c.get("id", f"case{i + 1}")
        prompt = c.get("prompt")
        n = c.get("output_tokens")
        if not isinstance(prompt, str) or not prompt.strip():
            raise bad(f"case {cid!r} needs a non-empty prompt string")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise bad(f"case {cid!r} needs output_tokens, a whole number >= 1")
        if cid in seen:
            raise bad(f"case id {cid!r} appears twice")
        seen.add(cid)
        cases.append(Case(str(cid), prompt, n))
    reps = raw.get("reps", 10)
    if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
        raise bad("reps must be a whole number >= 1")
    temperature = raw.get("temperature", 0.8)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
        raise bad("temperature must be a number >= 0")
    top_p = raw.get("top_p", 1.0)
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise bad("top_p must be in (0, 1]")
    known = {"name", "description", "reps", "temperature", "top_p", "enforce_length", "cases"}
    return Suite(
        name=str(raw.get("name") or default_name),
        cases=tuple(cases),
        reps=reps,
        temperature=float(temperature),
        top_p=float(top_p),
        enforce_length=bool(raw.get("enforce_length", True)),
        description=str(raw.get("description", "")),
        source=source,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _common(raw: dict[str, Any], bad) -> dict[str, Any]:
    reps = raw.get("reps", 10)
    if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
        raise bad("reps must be a whole number >= 1")
    temperature = raw.get("temperature", 0.8)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
        raise bad("temperature must be a number >= 0")
    top_p = raw.get("top_p", 1.0)
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise bad("top_p must be in (0, 1]")
    return {"reps": reps, "temperature": float(temperature), "top_p": float(top_p),
            "enforce_length": bool(raw.get("enforce_length", True))}


def _dataset_suite(raw: dict[str, Any], dataset: Any, default_name: str, source: str, bad) -> Suite:
    """A suite whose prompts come from a dataset ([dataset] table); its file is checked now."""
    if not isinstance(dataset, dict):
        raise bad("[dataset] must be a table, e.g. name = \"sharegpt\" and path = \"file.json\"")
    if raw.get("cases"):
        raise bad("has both [[cases]] and a [dataset]: keep one")
    n = dataset.get("num_prompts", DEFAULT_DATASET_PROMPTS)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad("[dataset] num_prompts must be a whole number >= 1")
    common = _common(raw, bad)
    kind = str(dataset.get("name") or dataset.get("dataset_name") or "random")
    output = dataset.get("output_len")
    suite = Suite(name=str(raw.get("name") or default_name),
                  cases=(Case(kind, f"{kind} dataset", int(output) if isinstance(output, int) else 0),),
                  description=str(raw.get("description", "")), source=source, dataset=dict(dataset),
                  extra={k: v for k, v in raw.items()
                         if k not in {"name", "description", "reps", "temperature", "top_p", "enforce_length",
                                      "dataset"}},
                  **common)
    try:
        suite.workload()  # the options and the file, now: a bad one is one line before anything starts
    except BadRequestError as exc:
        raise bad(str(exc)) from None
    return suite
