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
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.types import BadRequestError, GenerationRequest


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

    def requests(self, reps: int | None = None) -> list[GenerationRequest]:
        """Case-major order, as the article ran it: every repetition of short, then medium, ..."""
        n = self.reps if reps is None else reps
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
        data = asdict(self)
        data["cases"] = [asdict(c) for c in self.cases]
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

    cases_raw = raw.get("cases")
    if not isinstance(cases_raw, list) or not cases_raw:
        raise bad("needs at least one [[cases]] table with id, prompt and output_tokens")
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
