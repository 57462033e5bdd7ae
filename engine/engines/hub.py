"""Models and tokenizers from the Hugging Face hub: found in the local cache, else downloaded.

`vllm serve`, GuideLLM and AIPerf download a hub id on first use; so does tokentop, through
`huggingface_hub.snapshot_download` (the library vLLM itself uses: vllm/model_executor/model_loader/
weight_utils.py, download_weights_from_hf). It honours HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_TOKEN and
HF_HUB_OFFLINE, read when called (huggingface_hub fixes some of them at import).

Only what vLLM loads is fetched (`select_files`): the weights in ONE format, chosen from the repo's file
list the way vLLM's DefaultModelLoader does (default_loader.py: "*.safetensors" first, then "*.bin", then
"*.pt"; top-level files only, as vLLM globs the snapshot folder), the configs, the tokenizer and the chat
template. Free disk is checked first against the bytes still to come. Progress (bytes, rate, ETA) goes to a
`log(str)` callback: the CLI prints it on stderr, the app shows it as a start-up step.

Every failure is a HubError (a BadRequestError: one line saying what to do, exit 2): gated (the licence
page to accept, HF_TOKEN to set), missing, unauthorised (a refused token), offline, unreachable, out of
space. No Textual here.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.terminal_text import one_line
from engine.types import BadRequestError

Log = Callable[[str], None]
DEFAULT_ENDPOINT = "https://huggingface.co"
TOKENS_PAGE = "https://huggingface.co/settings/tokens"
PROGRESS_EVERY_S = 2.0
LINE_WIDTH = 70  # a progress line, so that "tokentop: " + it fits 80 columns

# Configs vLLM and transformers read (config.json, generation_config.json, tokenizer_config.json,
# preprocessor_config.json, quantize_config.json, hf_quant_config.json, ...); Mistral-format params.json.
CONFIG_PATTERNS = ("*config.json", "config*.json")
TOKENIZER_PATTERNS = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt",
                      "*.tiktoken", "tiktoken.model", "spiece.model", "sentencepiece*.model", "tekken.json")
CHAT_TEMPLATE_PATTERNS = ("chat_template*.jinja", "chat_template.json")
# vLLM's DefaultModelLoader order (default_loader.py: allow_patterns = ["*.safetensors", "*.bin"], then
# "*.pt" with fall_back_to_pt); weight_utils.download_weights_from_hf keeps the first pattern that matches.
WEIGHT_FORMATS = (("safetensors", ".safetensors", "model.safetensors.index.json"),
                  ("bin", ".bin", "pytorch_model.bin.index.json"),
                  ("pt", ".pt", None))
# weight_utils.filter_files_not_needed_for_inference: training state, never weights.
NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")


class HubError(BadRequestError):
    """A hub id that cannot be had: one line saying what to do (exit 2)."""


@dataclass(frozen=True)
class DownloadPlan:
    """What a download fetches. `files`: repo paths; `sizes`: bytes per file (from the hub's file list);
    `weights`: the weight format chosen ("safetensors", "bin", "pt", or None for a tokenizer)."""

    repo_id: str
    revision: str | None
    files: tuple[str, ...]
    sizes: dict[str, int]
    weights: str | None

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.get(f, 0) for f in self.files)


# -- settings, read now ----------------------------------------------------------------------------
def _is_true(value: str | None) -> bool:
    """huggingface_hub.constants._is_true: "1", "ON", "YES", "TRUE" in any case."""
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline(env: Mapping[str, str] | None = None) -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub reads it (constants.py), read now."""
    env = os.environ if env is None else env
    return _is_true(env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE"))


def endpoint(env: Mapping[str, str] | None = None) -> str:
    """HF_ENDPOINT, else huggingface.co (huggingface_hub.constants.ENDPOINT), read now."""
    env = os.environ if env is None else env
    return (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def cache_dir() -> Path:
    from engine.telemetry.roofline import hf_hub_cache

    return hf_hub_cache()


def _has_token() -> bool:
    return bool((os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip())


# -- choosing the files ----------------------------------------------------------------------------
def _top(name: str) -> bool:
    return "/" not in name


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return _top(name) and any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_files(repo_id: str, sizes: dict[str, int], kind: str = "model") -> DownloadPlan:
    """The files vLLM needs from a repo whose file list is `sizes` (repo path -> bytes). kind "model":
    the weights in one format (safetensors if the repo has them at its top level, else .bin, else .pt;
    Mistral-format consolidated*.safetensors only when there are no sharded ones beside them, as vLLM's
    filter_duplicate_safetensors_files keeps one set), configs, tokenizer, chat template. kind "tokenizer":
    the tokenizer, chat template and configs (AutoTokenizer reads config.json for the model type).
    HubError when a model repo has no weights vLLM can load."""
    small = [n for n in sizes if _matches(n, CONFIG_PATTERNS + TOKENIZER_PATTERNS + CHAT_TEMPLATE_PATTERNS)]
    if kind == "tokenizer":
        if not any(_matches(n, TOKENIZER_PATTERNS) for n in small):
            raise HubError(f"--tokenizer {repo_id} has no tokenizer files on the hub (tokenizer.json, "
                           "tokenizer.model, vocab.json, ...): pass another tokenizer")
        return DownloadPlan(repo_id, None, tuple(sorted(small)), dict(sizes), None)
    for fmt, suffix, index in WEIGHT_FORMATS:
        weights = [n for n in sizes if _top(n) and n.endswith(suffix) and n not in NOT_WEIGHTS]
        if not weights:
            continue
        if fmt == "safetensors":
            consolidated = [n for n in weights if n.startswith("consolidated")]
            if consolidated and len(consolidated) < len(weights):
                weights = [n for n in weights if n not in consolidated]  # the sharded HF set
            elif consolidated:  # Mistral format only: vLLM reads params.json and its own index
                index = "consolidated.safetensors.index.json"
                small += [n for n in ("params.json",) if n in sizes]
        extra = [index] if index and index in sizes else []
        files = tuple(sorted(set(weights + extra + small)))
        return DownloadPlan(repo_id, None, files, dict(sizes), fmt)
    raise HubError(f"--model {repo_id} has no safetensors or .bin weights at its top level: vLLM cannot load "
                   "it; pass another model or a local model folder")


# -- what is cached --------------------------------------------------------------------------------
def _weights_in(folder: Path) -> bool:
    """Weights at the top of a snapshot folder, and every shard a safetensors index names (a download
    cut short leaves some shards out: huggingface_hub links a file into the snapshot once it is whole)."""
    import json

    if not any(p.suffix in (".safetensors", ".bin", ".pt") and p.name not in NOT_WEIGHTS
               for p in folder.iterdir() if p.is_file()):
        return False
    for index in folder.glob("*.safetensors.index.json"):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
            shards = {v for v in weight_map.values() if isinstance(v, str) and "/" not in v}
        except (OSError, ValueError, AttributeError):
            continue
        if any(not (folder / shard).is_file() for shard in shards):
            return False
    return True


def cached_model(repo_id: str) -> Path | None:
    """The snapshot folder of a hub model in the local cache with its config.json and weights, or None.
    Never touches the network (a folder holding only a tokenizer and config.json is not a model)."""
    from engine.telemetry.roofline import cached_model_folder

    folder = cached_model_folder(repo_id, cache_dir())
    return folder if folder is not None and _weights_in(folder) else None


# -- messages --------------------------------------------------------------------------------------
def _gb(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n:.0f} B"


def _fit(head: str, repo_id: str, tail: str, width: int = LINE_WIDTH) -> str:
    """head + repo id + tail in `width` characters: the id shortened to its name, then cut with "…"."""
    name = repo_id if len(head) + len(repo_id) + len(tail) <= width else repo_id.rsplit("/", 1)[-1]
    room = width - len(head) - len(tail)
    if len(name) > room:
        name = name[: max(1, room - 1)] + "…"
    return f"{head}{name}{tail}"


def _duration(s: float) -> str:
    s = max(0, int(round(s)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def offline_message(what: str, repo_id: str) -> str:
    return (f"{what} {repo_id} is not in the local Hugging Face cache ({cache_dir()}) and HF_HUB_OFFLINE is "
            "set: unset HF_HUB_OFFLINE to download it, or pass a local folder")


def explain(exc: BaseException, what: str, repo_id: str) -> HubError:
    """The one line for a huggingface_hub error (huggingface_hub.utils._http.hf_raise_for_status names
    them from the hub's X-Error-Code / X-Error-Message headers)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub = endpoint()
    page = f"{hub}/{repo_id}"
    server = (getattr(exc, "server_message", None) or "").strip()
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        if status == 403 or _has_token():  # signed in, but not (yet) on the authorised list
            return HubError(f"{what} {repo_id} is gated and HF_TOKEN's account has no access yet: accept the "
                            f"licence at {page} (approval may take a while), then retry")
        return HubError(f"{what} {repo_id} is gated: accept its licence at {page}, then set HF_TOKEN "
                        f"to a read token of that account ({TOKENS_PAGE})")
    if isinstance(exc, RepositoryNotFoundError):
        refused = "invalid username or password" in server.lower() and _has_token()
        if "invalid credentials" in server.lower() or refused:
            return HubError(f"{what} {repo_id}: {hub} refused HF_TOKEN (invalid credentials): set a valid "
                            f"read token ({TOKENS_PAGE}) or unset HF_TOKEN")
        tail = ("or HF_TOKEN's account cannot see it" if _has_token()
                else "or it is private: set HF_TOKEN to a token that can read it")
        return HubError(f"{what} {repo_id} is not on {hub}: check the id (org/name), {tail}")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{what} {repo_id}: {hub} has no such revision: check the id")
    if isinstance(exc, (OfflineModeIsEnabled,)) or (isinstance(exc, LocalEntryNotFoundError) and offline()):
        return HubError(offline_message(what, repo_id))
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.ENOSPC:
        return HubError(f"{what} {repo_id}: the disk of {cache_dir()} filled up while downloading: free "
                        "space, or set HF_HOME (or HF_HUB_CACHE) to a larger disk, and retry")
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        return HubError(f"{what} {repo_id}: {hub} refused access ({status}"
                        f"{': ' + one_line(server, 80) if server else ''}): set HF_TOKEN to a read "
                        f"token with access ({TOKENS_PAGE})")
    if isinstance(exc, HfHubHTTPError) and status is not None:
        return HubError(f"{what} {repo_id}: {hub} answered {status}: try again later, or set HF_ENDPOINT "
                        "to a mirror")
    reason = one_line(exc, 100)
    return HubError(f"{what} {repo_id}: cannot download from {hub} ({reason}): check the network or "
                    "HF_ENDPOINT, or pass a local folder")


# -- progress --------------------------------------------------------------------------------------
def progress_line(repo_id: str, done: int, total: int, elapsed_s: float, width: int = LINE_WIDTH) -> str:
    """"downloading org/name: 1.2 GB of 16.1 GB (7%), 45.3 MB/s, ETA 5 min 12 s", at most `width`
    characters (the repo id shortened first). The rate is the mean since the download began."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    pct = int(100 * done / total) if total else 100
    eta = _duration((total - done) / rate) if rate > 0 and total >= done else "?"
    return _fit("downloading ", repo_id, f": {_gb(done)} of {_gb(total)} ({pct}%), {_gb(rate)}/s, ETA {eta}", width)


class DownloadMeter:
    """Counts the bytes huggingface_hub reports and says them through `log` at most every `every_s`
    seconds (and once at the end). Thread-safe: snapshot_download updates from its worker threads."""

    def __init__(self, repo_id: str, total: int, log: Log, every_s: float = PROGRESS_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.repo_id, self.total, self.log, self.every_s, self.clock = repo_id, total, log, every_s, clock
        self.t0 = clock()
        self._last = self.t0
        self._bars: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        return int(max(self._bars.values(), default=0))

    def seen(self, bar: int, n: float) -> None:
        """Bar `bar` has counted `n` bytes. The most any byte bar has counted is what is on disk (for
        plain HTTP downloads huggingface_hub's transfer and write bars count the same bytes). Said every
        `every_s` seconds, and at each quarter of the total however fast it goes."""
        with self._lock:
            before = self.done
            self._bars[bar] = n
            now = self.clock()
            quarter = self.total > 0 and 4 * before // self.total < 4 * min(self.done, self.total - 1) // self.total
            if now - self._last < self.every_s and not quarter:
                return
            self._last = now
            line = progress_line(self.repo_id, min(self.done, self.total), self.total, now - self.t0)
        self.log(line)

    def finish(self) -> str:
        took = self.clock() - self.t0
        rate = f", {_gb(self.total / took)}/s" if took > 0 else ""
        return f"downloaded {self.repo_id}: {_gb(self.total)} in {_duration(took)}{rate}"


def progress_class(meter: DownloadMeter) -> type:
    """A tqdm class for snapshot_download(tqdm_class=...): draws nothing itself (its output goes
    nowhere), reports every byte bar's count to `meter`."""
    from tqdm.std import tqdm as std_tqdm

    class _Nowhere:
        def write(self, _s: str) -> None:
            pass

        def flush(self) -> None:
            pass

    class HubProgress(std_tqdm):
        monitor_interval = 0  # no tqdm monitor thread

        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["file"] = _Nowhere()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            out = super().update(n)
            if self.unit == "B":
                meter.seen(id(self), self.n)
            return out

    return HubProgress


# -- disk ------------------------------------------------------------------------------------------
def _existing(path: Path) -> Path:
    path = Path(path).expanduser().absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_space(what: str, repo_id: str, need: int, where: Path) -> None:
    """HubError when `need` bytes do not fit in the free space of `where`'s disk (shutil.disk_usage of
    its nearest existing folder)."""
    free = shutil.disk_usage(_existing(where)).free
    if need > free:
        raise HubError(f"{what} {repo_id} needs {_gb(need)} in {where} but its disk has {_gb(free)} free: "
                       "free space, or set HF_HOME (or HF_HUB_CACHE) to a larger disk")


# -- the download ----------------------------------------------------------------------------------
def plan(repo_id: str, kind: str = "model", what: str = "--model") -> DownloadPlan:
    """Ask the hub for the repo's files and sizes (HfApi.model_info with files_metadata) and choose."""
    from huggingface_hub import HfApi

    if offline():
        raise HubError(offline_message(what, repo_id))
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, files_metadata=True)
    except BadRequestError:
        raise
    except Exception as exc:
        raise explain(exc, what, repo_id) from None
    sizes: dict[str, int] = {}
    for s in info.siblings or []:
        size = s.size if s.size is not None else (s.lfs.size if s.lfs is not None else 0)
        sizes[s.rfilename] = int(size or 0)
    chosen = select_files(repo_id, sizes, kind)
    return DownloadPlan(repo_id, info.sha, chosen.files, chosen.sizes, chosen.weights)


def _probe(p: DownloadPlan, what: str) -> None:
    """One HEAD of a small file before anything is announced or written: a gated repo's info is public
    but its files answer 401/403 (GatedRepo), and that is said now, in one line."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    first = next((f for f in ("config.json", "tokenizer_config.json") if f in p.files), p.files[0] if p.files else None)
    if first is None:
        return
    try:
        get_hf_file_metadata(hf_hub_url(p.repo_id, first, revision=p.revision, endpoint=endpoint()))
    except Exception as exc:
        raise explain(exc, what, p.repo_id) from None


def _narrow_to_index(p: DownloadPlan, what: str) -> DownloadPlan:
    """Sharded safetensors with an index: only the shards its weight_map names, as vLLM does
    (weight_utils.download_weights_from_hf reads model.safetensors.index.json; default_loader's
    filter_duplicate_safetensors_files drops the rest), so a stray copy beside the shards (a 4-bit
    model.safetensors next to bf16 shards, Blaizzy/mlx-vlm#1464) is not fetched. The index is untrusted:
    one naming files the repo does not have, or none, leaves the plan as it was."""
    import json

    from huggingface_hub import hf_hub_download

    index = next((f for f in p.files if f.endswith(".safetensors.index.json")), None)
    if p.weights != "safetensors" or index is None:
        return p
    try:
        path = hf_hub_download(p.repo_id, index, revision=p.revision, cache_dir=str(cache_dir()),
                               endpoint=endpoint())
        with open(path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
    except Exception:  # access was probed just before: the glob rule stands
        return p
    names = {v for v in weight_map.values() if isinstance(v, str)} if isinstance(weight_map, dict) else set()
    if not names or not names <= set(p.files):
        return p
    files = tuple(f for f in p.files if not f.endswith(".safetensors") or f in names)
    return DownloadPlan(p.repo_id, p.revision, files, p.sizes, p.weights)


def _cached_file(p: DownloadPlan, name: str) -> bool:
    """The file is whole in the cache's snapshot of the plan's commit."""
    if not p.revision:
        return False
    return (cache_dir() / ("models--" + p.repo_id.replace("/", "--")) / "snapshots" / p.revision / name).exists()


def _still_to_fetch(p: DownloadPlan) -> int:
    """Bytes of the plan not already in the cache's snapshot of its commit."""
    return sum(p.sizes.get(f, 0) for f in p.files if not _cached_file(p, f))


def download(repo_id: str, kind: str = "model", what: str = "--model", log: Log = lambda _m: None,
             every_s: float = PROGRESS_EVERY_S) -> Path:
    """Download what vLLM needs of `repo_id` into the Hugging Face cache and return its snapshot folder.
    Blocking. HubError (one line) for every failure; KeyboardInterrupt passes through."""
    from huggingface_hub import snapshot_download

    p = plan(repo_id, kind, what)
    _probe(p, what)
    p = _narrow_to_index(p, what)
    where = cache_dir()
    need = _still_to_fetch(p)
    check_space(what, repo_id, need, where)
    log(f"downloading from {endpoint()} into {where}")  # paths: wrapped by the CLI on a terminal
    todo = sum(1 for f in p.files if not _cached_file(p, f))
    log(_fit("downloading ", repo_id, f": {_gb(need)} in {todo} file{'s' if todo != 1 else ''}"
             + (f" ({p.weights})" if p.weights else "")))
    meter = DownloadMeter(repo_id, need, log, every_s)
    try:
        folder = snapshot_download(repo_id, revision=None, cache_dir=str(where), endpoint=endpoint(),
                                   allow_patterns=[glob.escape(f) for f in p.files],
                                   tqdm_class=progress_class(meter))
    except BadRequestError:
        raise
    except Exception as exc:
        raise explain(exc, what, repo_id) from None
    log(meter.finish())
    return Path(folder)


def ensure_model(repo_id: str, log: Log = lambda _m: None, download_now: bool = True) -> tuple[Path | None, str]:
    """(snapshot folder, why) for a hub model id: the cached one, else downloaded (HubError when it
    cannot be). With download_now=False (a check before the app starts) nothing is fetched: (None, why)
    when it would be, HubError at once when HF_HUB_OFFLINE forbids it."""
    found = cached_model(repo_id)
    if found is not None:
        return found, "--model: a hub id, from the local Hugging Face cache"
    if offline():
        raise HubError(offline_message("--model", repo_id))
    if not download_now:
        return None, "--model: a hub id, downloaded when the engine starts"
    folder = download(repo_id, "model", "--model", log)
    return folder, f"--model: a hub id, downloaded from {endpoint()}"


def ensure_tokenizer(name: str, log: Log = lambda _m: None, download_now: bool = True) -> Path | None:
    """The folder of a --tokenizer: a local folder, a cached hub id, else the hub id's tokenizer files
    downloaded (the same rule as --model). None only with download_now=False when it would be fetched.
    BadRequestError (one line) when it cannot be had."""
    from engine.measure.token_counts import find_tokenizer
    from engine.telemetry.roofline import looks_like_hub_id

    folder, why = find_tokenizer(name)
    if folder is not None:
        return folder
    if Path(os.path.expanduser(name)).exists() or not looks_like_hub_id(name):
        raise BadRequestError(f"--tokenizer {name}: {why}: pass a local tokenizer folder or a hub id")
    if offline():
        raise HubError(offline_message("--tokenizer", name))
    if not download_now:
        return None
    return download(name, "tokenizer", "--tokenizer", log)
