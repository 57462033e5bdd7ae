"""Suites: the article's bundled suite, and user TOML files."""

from __future__ import annotations

import pytest

from engine.types import BadRequestError
from engine.workloads.suites import load_suite
from tui.cli.common import resolve_suite

ARTICLE_PROMPTS = {
    "short": ("Write a short, creative slogan for an AI-powered personal assistant.", 50),
    "medium": ("Explain the concept of 'attention mechanism' in transformer models in simple terms, "
               "suitable for a non-technical audience.", 200),
    "long": ("Draft a comprehensive email to a team announcing a new project focused on integrating generative AI "
             "into our customer support workflow. Include objectives, expected benefits, and next steps.", 500),
}


def test_seed_suite_is_the_articles():
    suite = resolve_suite("seed")
    assert [c.id for c in suite.cases] == ["short", "medium", "long"]
    for case in suite.cases:
        prompt, tokens = ARTICLE_PROMPTS[case.id]
        assert case.prompt == prompt and case.output_tokens == tokens
    assert suite.reps == 10 and suite.temperature == 0.8 and suite.enforce_length
    reqs = suite.requests(1)
    assert [r.max_tokens for r in reqs] == [50, 200, 500]
    assert all(r.enforce_length and r.temperature == 0.8 for r in reqs)


def test_user_suite_file(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('reps = 3\ntemperature = 0.0\n[[cases]]\nid = "x"\nprompt = "Hi"\noutput_tokens = 4\n')
    suite = load_suite(p)
    assert suite.name == "mine" and suite.reps == 3 and len(suite.requests()) == 3


@pytest.mark.parametrize(
    "text, needle",
    [
        ('reps = 3\n[[cases]\nid = "x"', "not valid TOML"),
        ("reps = 3\n", "[[cases]]"),
        ('[[cases]]\nid = "x"\nprompt = "Hi"\noutput_tokens = 0\n', "output_tokens"),
        ('reps = 0\n[[cases]]\nprompt = "Hi"\noutput_tokens = 3\n', "reps"),
    ],
)
def test_bad_suite_files_say_what_is_wrong(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(BadRequestError) as err:
        load_suite(p)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_suite_file():
    with pytest.raises(BadRequestError, match="does not exist"):
        resolve_suite("/nonexistent/suite.toml")
