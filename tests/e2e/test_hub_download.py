"""A hub id that is not cached is downloaded (engine/engines/hub.py) through huggingface_hub's own
snapshot_download, from a loopback hub (tests/support/hub_server.py: HF_ENDPOINT) serving a repo made of the
embedded model's files. Never the internet: every process gets HF_ENDPOINT pointing at loopback."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.engines.hub import HubError, progress_line, select_files
from tests.support.hub_server import HubServer, Repo
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
REPO = "tt/smol-135m"


@pytest.fixture(scope="module")
def repo_files(embedded_model_path) -> dict:
    """The embedded model's folder as a hub repo, with what real repos carry beside it: a .bin copy
    of the weights and an original/ folder (vLLM loads neither), a README."""
    files: dict = {p.name: p for p in Path(embedded_model_path).iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"\0" * 2048
    files["original/consolidated.00.pth"] = b"\1" * 2048
    files["README.md"] = b"# smol\n"
    return files


def hub_env(cli_env: dict, tmp_path: Path, hub: HubServer, **extra: str) -> dict:
    env = {k: v for k, v in cli_env.items()
           if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_OFFLINE", "COLUMNS"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1",
               NO_PROXY="127.0.0.1,127.0.0.2", no_proxy="127.0.0.1,127.0.0.2",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def python(code: str, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


RESOLVE = """
    import json, sys
    from engine.engines.factory import resolve_model
    path, label, why = resolve_model(sys.argv[-1] if len(sys.argv) > 1 else "%s",
                                     log=lambda m: print("tokentop: " + m, file=sys.stderr))
    print(json.dumps([path, label, why]))
""" % REPO


def test_a_hub_model_downloads_with_progress_into_a_fresh_cache_then_loads_from_it(
        tmp_path, cli_env, repo_files, embedded_model_path):
    with HubServer([Repo(REPO, repo_files)]) as hub:
        env = hub_env(cli_env, tmp_path, hub)
        out = python(RESOLVE, env)
        assert out.returncode == 0, out.stderr
        path, label, why = json.loads(out.stdout)
        folder = Path(path)
        assert label == REPO and "downloaded from " + hub.url in why
        assert folder.is_relative_to(tmp_path / "hf" / "hub")  # HF_HOME honoured
        # Only what vLLM loads: one weight format (safetensors), configs, tokenizer, chat template.
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            n for n in repo_files if n not in ("pytorch_model.bin", "README.md") and "/" not in n)
        # The same bytes the engine tests load from the embedded folder, file for file.
        assert all(filecmp.cmp(folder / f.name, Path(embedded_model_path) / f.name, shallow=False)
                   for f in folder.iterdir())
        assert "file:pytorch_model.bin" not in hub.fetched() and "file:original/consolidated.00.pth" not in hub.fetched()
        lines = out.stderr.splitlines()
        progress = [x for x in lines if x.startswith("tokentop: downloading ") and " MB of " in x]
        assert progress and all(" of " in x and "/s" in x and "ETA" in x for x in progress), out.stderr
        assert f"tokentop: downloading from {hub.url} into {tmp_path / 'hf' / 'hub'}" in lines
        assert all(len(x) <= 80 for x in lines if str(tmp_path) not in x), out.stderr
        assert any(x.startswith(f"tokentop: downloaded {REPO}: 272.6 MB in ") for x in lines), out.stderr

        # Loaded: the tokenizer reads from the folder, and a second start finds it cached, fetching nothing.
        got = len(hub.fetched())
        again = python(RESOLVE + """
    from engine.measure.token_counts import TokenCounter
    print(TokenCounter(json.loads(json.dumps(path))).count("Hello, world"))
""", env)
        assert again.returncode == 0, again.stderr
        first, count = again.stdout.splitlines()
        assert json.loads(first) == [path, REPO, "--model: a hub id, from the local Hugging Face cache"]
        assert int(count) > 0 and len(hub.fetched()) == got and "downloading" not in again.stderr


def test_a_hub_tokenizer_is_downloaded_and_a_run_stored(tmp_path, cli_env, tokentop_cmd, repo_files):
    from tests.support.fake_openai import Reply, ScriptServer, chat, timed

    reply = Reply(parts=timed([(5, chat("one two", role="assistant")), (10, chat(" three", finish="stop"))]))
    db = tmp_path / "t.duckdb"
    with HubServer([Repo(REPO, repo_files)]) as hub, ScriptServer([reply]) as server:
        env = hub_env(cli_env, tmp_path, hub)
        out = subprocess.run([*tokentop_cmd, "--db", str(db), "bench", "--engine", "openai", "--endpoint",
                              server.url, "--tokenizer", REPO, "--reps", "1", "--json"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"tokentop: downloading {REPO}: " in out.stderr and f"tokentop: downloading from {hub.url} into" in out.stderr
    fetched = hub.fetched()
    assert "file:tokenizer.json" in fetched and "file:model.safetensors" not in fetched  # the tokenizer only
    run = json.loads(out.stdout)
    assert run["run_id"] and run["requests"]
    assert all("tokenizer" in r["token_count_source"] for r in run["requests"])  # the downloaded one counted


# -- each failure: one line, exit 2, no traceback, through the real command --------------------------------
def _bench(tokentop_cmd, tmp_path, env, model=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*tokentop_cmd, "--db", str(tmp_path / "f.duckdb"), "bench", "--model", model],
                          capture_output=True, text=True, env=env, timeout=180)


def _one_line(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    return out.stderr.strip()


@pytest.mark.parametrize("token, status", [(None, "401"), ("hf_notyetapproved", "403")])
def test_a_gated_repo_names_the_licence_page_and_hf_token(tmp_path, cli_env, tokentop_cmd, repo_files, token, status):
    # The hub's own words: 401 "...Please log in." (vllm-project/semantic-router#817) without a token, 403
    # "...not in the authorized list. Visit https://huggingface.co/<id> to ask for access." with one whose
    # account has not been approved (kubeai-project/kubeai#155); both X-Error-Code: GatedRepo.
    with HubServer([Repo("meta-llama/Meta-Llama-3-8B-Instruct", repo_files, gated="manual")]) as hub:
        env = hub_env(cli_env, tmp_path, hub, **({"HF_TOKEN": token} if token else {}))
        line = _one_line(_bench(tokentop_cmd, tmp_path, env, "meta-llama/Meta-Llama-3-8B-Instruct"))
        assert any(p == "resolve:config.json" for _m, p in hub.requests)  # it asked the hub
    assert f"accept the licence at {hub.url}/meta-llama/Meta-Llama-3-8B-Instruct" in line or \
        f"accept its licence at {hub.url}/meta-llama/Meta-Llama-3-8B-Instruct" in line
    assert "gated" in line
    if token is None:
        assert "set HF_TOKEN" in line
    else:
        assert "HF_TOKEN's account has no access yet" in line
    assert not list((tmp_path / "hf" / "hub").glob("**/*.safetensors"))


@pytest.mark.parametrize("token", [None, "hf_sometoken"])
def test_a_missing_repo_says_check_the_id(tmp_path, cli_env, tokentop_cmd, token):
    # Anonymous: the hub answers 401 RepoNotFound "Invalid username or password." (mudler/LocalAI#6238);
    # with a token, 404 RepoNotFound.
    with HubServer([]) as hub:
        env = hub_env(cli_env, tmp_path, hub, **({"HF_TOKEN": token} if token else {}))
        line = _one_line(_bench(tokentop_cmd, tmp_path, env, "no-such-org/no-such-model"))
    assert f"--model no-such-org/no-such-model is not on {hub.url}: check the id (org/name)" in line
    assert ("cannot see it" in line) if token else ("private: set HF_TOKEN" in line)


def test_a_refused_token_says_set_a_valid_one(tmp_path, cli_env, tokentop_cmd, repo_files):
    # lldacing/ComfyUI_PuLID_Flux_ll#30: 401 RepoNotFound, "Invalid credentials in Authorization header".
    with HubServer([Repo(REPO, repo_files)]) as hub:
        hub.refused_tokens.add("hf_revoked")
        line = _one_line(_bench(tokentop_cmd, tmp_path, hub_env(cli_env, tmp_path, hub, HF_TOKEN="hf_revoked")))
    assert f"--model {REPO}: {hub.url} refused HF_TOKEN (invalid credentials)" in line
    assert "set a valid read token" in line and "unset HF_TOKEN" in line


def test_only_the_shards_the_index_names_are_fetched(tmp_path, cli_env):
    # Blaizzy/mlx-vlm#1464: a stray 4-bit model.safetensors beside the bf16 shards the index names; vLLM
    # loads the index's shards only (weight_utils.download_weights_from_hf), so only they come down.
    index = {"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                         "b": "model-00002-of-00002.safetensors"}}
    files = {"config.json": b"{}", "tokenizer.json": b"{}", "model.safetensors.index.json": json.dumps(index).encode(),
             "model-00001-of-00002.safetensors": b"1" * 4, "model-00002-of-00002.safetensors": b"2" * 4,
             "model.safetensors": b"4" * 4}
    with HubServer([Repo("tt/sharded", files)]) as hub:
        out = python(RESOLVE.replace(REPO, "tt/sharded"), hub_env(cli_env, tmp_path, hub))
        assert out.returncode == 0, out.stderr
    folder = Path(json.loads(out.stdout)[0])
    assert sorted(p.name for p in folder.iterdir()) == sorted(n for n in files if n != "model.safetensors")
    assert "file:model.safetensors" not in hub.fetched()


def test_offline_and_not_cached_says_unset_hf_hub_offline(tmp_path, cli_env, tokentop_cmd, repo_files):
    with HubServer([Repo(REPO, repo_files)]) as hub:
        env = hub_env(cli_env, tmp_path, hub, HF_HUB_OFFLINE="1")
        line = _one_line(_bench(tokentop_cmd, tmp_path, env))
        assert hub.requests == []  # offline means offline
    assert f"--model {REPO} is not in the local Hugging Face cache ({tmp_path / 'hf' / 'hub'})" in line
    assert "unset HF_HUB_OFFLINE" in line


def test_a_full_disk_is_said_before_downloading(tmp_path, cli_env, repo_files):
    # The one boundary replaced: shutil.disk_usage reports 5 MB free, in the real CLI's own process.
    with HubServer([Repo(REPO, repo_files)]) as hub:
        env = hub_env(cli_env, tmp_path, hub)
        out = python(f"""
            import shutil, sys
            shutil.disk_usage = lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 5 * 10**6, 5 * 10**6)
            from tui.cli import main
            sys.exit(main(["--db", {str(tmp_path / "d.duckdb")!r}, "bench", "--model", {REPO!r}]))
        """, env)
        line = _one_line(out)
        assert hub.fetched() == []  # nothing downloaded
    assert f"--model {REPO} needs 272.6 MB in {tmp_path / 'hf' / 'hub'} but its disk has 5.0 MB free" in line
    assert "set HF_HOME (or HF_HUB_CACHE) to a larger disk" in line


def test_the_app_checks_offline_before_its_first_frame(tmp_path, cli_env, tokentop_cmd):
    with HubServer([]) as hub:
        env = hub_env(cli_env, tmp_path, hub, HF_HUB_OFFLINE="1")
        out = subprocess.run([*tokentop_cmd, "--db", str(tmp_path / "a.duckdb"), "--tokenizer", "tt/not-cached"],
                             capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    line = _one_line(out)
    assert "--tokenizer tt/not-cached is not in the local Hugging Face cache" in line and "HF_HUB_OFFLINE" in line


# -- which files: field cases -----------------------------------------------------------------------------
def test_mistral_7b_v03_sharded_safetensors_not_the_consolidated_copy():
    # vllm-project/vllm#4989 (a user's listing of mistralai/Mistral-7B-Instruct-v0.3): the sharded HF weights
    # and a consolidated.safetensors of the same model; vLLM loads one set (filter_duplicate_safetensors_files).
    sizes = {"config.json": 601, "consolidated.safetensors": 14496078512,
             "model-00001-of-00003.safetensors": 4949453792, "model-00002-of-00003.safetensors": 4999819336,
             "model-00003-of-00003.safetensors": 4546807800, "model.safetensors.index.json": 23950,
             "params.json": 202, "tokenizer.model": 587404, "tokenizer.model.v3": 587404,
             "tokenizer.json": 1961548, "tokenizer_config.json": 140874, "special_tokens_map.json": 414,
             "generation_config.json": 116, "README.md": 7000}
    plan = select_files("mistralai/Mistral-7B-Instruct-v0.3", sizes)
    assert "consolidated.safetensors" not in plan.files and "model.safetensors.index.json" in plan.files
    assert plan.weights == "safetensors" and plan.total_bytes < 14.6e9  # not 29 GB


def test_gpt_oss_style_repo_skips_original_and_metal_copies():
    # unslothai/unsloth#11227: openai/gpt-oss-20b carries original/ and metal/ copies of its weights
    # (41 GB in all, 13.8 GB loaded); vLLM globs the top level only.
    sizes = {"config.json": 1000, "model-00000-of-00002.safetensors": 4_625_017_896,
             "model-00001-of-00002.safetensors": 4_115_017_936, "model.safetensors.index.json": 36_000,
             "original/model.safetensors": 13_761_300_984, "original/config.json": 400,
             "metal/model.bin": 13_750_886_400, "tokenizer.json": 27_868_174, "chat_template.jinja": 16_738}
    plan = select_files("openai/gpt-oss-20b", sizes)
    assert not [f for f in plan.files if "/" in f] and "chat_template.jinja" in plan.files


def test_bin_only_repo_gets_its_bin_and_no_training_state():
    sizes = {"config.json": 651, "pytorch_model.bin": 250_540_281, "training_args.bin": 3000,
             "flax_model.msgpack": 250_500_000, "vocab.json": 798_156, "merges.txt": 456_356}
    plan = select_files("facebook/opt-125m", sizes)
    assert plan.weights == "bin" and "training_args.bin" not in plan.files and "flax_model.msgpack" not in plan.files


def test_a_repo_without_loadable_weights_is_one_line():
    with pytest.raises(HubError, match="no safetensors or .bin weights at its top level"):
        select_files("TheBloke/x-GGUF", {"config.json": 10, "x.Q4_K_M.gguf": 4_000_000_000})


def test_progress_lines_fit_80_columns_with_the_cli_prefix():
    line = progress_line("some-very-long-organisation-name/an-even-longer-model-name-Instruct-v0.3-AWQ",
                         1_234_000_000, 16_100_000_000, 30.0)
    assert len("tokentop: " + line) <= 80 and "1.2 GB of 16.1 GB (7%)" in line and "ETA 6 min" in line


# -- the app: the download is a start-up step in its top line ---------------------------------------------
async def test_the_apps_top_line_shows_the_download_while_the_engine_starts(tmp_path, monkeypatch, repo_files):
    """`tokentop --engine openai --endpoint URL --tokenizer tt/smol-135m` at 80x24: the tokenizer is
    fetched while the engine starts, and the top line says so until it is done; then the engine is ready."""
    import threading

    import huggingface_hub.utils._detect_agent as hf_detect_agent

    from data.store.database import Store
    from tests.support.fake_openai import ScriptServer
    from tui.app import TokentopApp
    from tui.widgets.status_bar import StatusBar

    with HubServer([Repo(REPO, repo_files)]) as hub, ScriptServer([]) as server:
        hub.hold = threading.Event()
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        # huggingface_hub was imported earlier in this process, before HF_ENDPOINT: tokentop passes the
        # endpoint on every call, but huggingface_hub's agent-harness registry (utils/_detect_agent.py, asked
        # once per process when headers are built) would go to its import-time endpoint: given, empty.
        monkeypatch.setattr(hf_detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}})
        store = Store(tmp_path / "app.duckdb")
        options = dict(engine="openai", model=None, endpoint=server.url, api="chat", tokenizer=REPO, dtype="auto",
                       tensor_parallel_size=1, pipeline_parallel_size=1, extra_args=None, where={})
        app = TokentopApp(store=store, engine_options=options, db_label="app.duckdb")
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                def top_line() -> str:
                    bar = app.screen.query_one(StatusBar)
                    bar.refresh_status()
                    return str(bar.render())

                await wait_for(pilot, lambda: "downloading" in top_line(), 60,
                               lambda: f"the download on the top line: {(top_line(), app.engine_message)}")
                # At 80 columns beside every screen key: "starting:" and the step ("the" left out to fit).
                assert app.engine_state == "starting" and "│ starting: downloading model " in top_line()
                hub.hold.set()
                await wait_for(pilot, lambda: app.engine_state != "starting", 60,
                               lambda: f"the engine to start: {top_line()}")
                assert app.engine_state == "ready", app.engine_message
                assert "downloading" not in top_line()
        finally:
            hub.hold.set()
            app.shutdown_engine()
            store.close()
    assert "file:tokenizer.json" in hub.fetched() and "file:model.safetensors" not in hub.fetched()


def test_a_download_cut_short_is_not_taken_for_cached(tmp_path, cli_env):
    """Shard 2 of 2 never arrived (the process was stopped): the next start fetches what is missing."""
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    files = {"config.json": b"{}", "tokenizer.json": b"{}", "model.safetensors.index.json": json.dumps(index).encode(),
             "model-00001-of-00002.safetensors": b"1" * 4, "model-00002-of-00002.safetensors": b"2" * 4}
    with HubServer([Repo("tt/cut", files)]) as hub:
        env = hub_env(cli_env, tmp_path, hub)
        first = python(RESOLVE.replace(REPO, "tt/cut"), env)
        assert first.returncode == 0, first.stderr
        folder = Path(json.loads(first.stdout)[0])
        (folder / "model-00002-of-00002.safetensors").unlink()
        again = python(RESOLVE.replace(REPO, "tt/cut"), env)
        assert again.returncode == 0, again.stderr
    assert "downloaded from" in json.loads(again.stdout)[2] and "tokentop: downloading tt/cut: 4 B in 1 file (safetensors)" in again.stderr
    assert (folder / "model-00002-of-00002.safetensors").is_file()
    assert hub.fetched().count("file:model-00001-of-00002.safetensors") == 1  # the whole shard is not fetched again
