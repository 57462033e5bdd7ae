"""The second prompt (issue 24, the README's first five minutes re-walked): after Enter the cursor goes
to the answer pane and letters typed there go back to the prompt. They start the next prompt; they
used to be appended to the one just sent ("Why does inference speed matter?Write a long story…")."""

from __future__ import annotations

from textual.widgets import Input

from tests.tui.test_keys import FakeSession, fixed, make_app  # noqa: F401  (fixed: the fixture)
from tests.tui.test_keys_burst import send_burst
from tui.widgets.stream_view import StreamView


async def test_typing_after_a_prompt_starts_the_next_one(fixed):
    session = FakeSession(fixed)
    app = make_app(fixed, "live", session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.screen.query_one("#live-prompt", Input)
        await send_burst(app, pilot, ["Why?", "enter"])
        assert [r.prompt for r in session.requests] == ["Why?"]
        assert isinstance(app.focused, StreamView)
        await send_burst(app, pilot, ["Tell more."])
        assert prompt.value == "Tell more."


async def test_the_sent_prompt_can_still_be_edited_from_the_prompt(fixed):
    """`/` puts the cursor back in the prompt: End and more text extend the prompt just sent."""
    session = FakeSession(fixed)
    app = make_app(fixed, "live", session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.screen.query_one("#live-prompt", Input)
        await send_burst(app, pilot, ["Why?", "enter"])
        await pilot.press("slash")
        assert app.focused is prompt
        await send_burst(app, pilot, ["end", " Really."])
        assert prompt.value == "Why? Really."
