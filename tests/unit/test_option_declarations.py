"""One declaration drives all three (issue 22 step 1): an option put in a family module's OPTIONS becomes a
`tokentop load` flag, a field on the Load form and a value in the workload's parsed options that the
family's build reads, with no edit anywhere else; a family put in a module's FAMILIES becomes a
--dataset-name, a line of `tokentop load --help`, a workload on the form, and builds its workload."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from engine.types import BadRequestError
from engine.workloads import WorkloadOptions, make_workload, synthetic
from engine.workloads.options import (
    Field,
    Option,
    form_fields,
    form_workloads,
    options_from_form,
    options_from_namespace,
    whole,
)
from engine.workloads.registry import Family
from tui.cli import build_parser

THROWAWAY = Option("--random-throwaway-len", "random: the test's own option", whole(0), metavar="N",
                   workloads=("random",), section="workload", workload=True,
                   field=Field("throwaway", "load-throwaway", "0", group="opts-random", slot=10))


def _load_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["load"]


def test_an_option_declared_in_its_family_module_is_a_flag_a_form_field_and_a_parsed_option(monkeypatch):
    monkeypatch.setattr(synthetic, "OPTIONS", [*synthetic.OPTIONS, THROWAWAY])
    read: list[int] = []

    def build(opts, path, common):  # the family's build, noting what it was given
        read.append(opts.random_throwaway_len)
        return synthetic.build_random(opts, path, common)

    monkeypatch.setattr(synthetic, "FAMILIES", [replace(f, build=build) if f.name == "random" else f
                                                for f in synthetic.FAMILIES])

    parser = _load_parser()
    assert "--random-throwaway-len N" in parser.format_help()
    opts = options_from_namespace(parser.parse_args(["--random-throwaway-len", "7", "--input-len", "16"]))
    assert opts.random_throwaway_len == 7

    assert THROWAWAY in form_fields("opts-random")
    from_form, _ = options_from_form("random", {"random_throwaway_len": "5"})
    assert from_form.random_throwaway_len == 5

    make_workload(opts)
    assert read == [7]
    with pytest.raises(BadRequestError) as refused:  # the rule comes from the same declaration
        make_workload(WorkloadOptions(dataset_name="prefix_repetition", random_throwaway_len=3))
    assert str(refused.value) == "--random-throwaway-len is for --dataset-name random"


def test_a_family_declared_in_a_module_is_a_dataset_name_a_help_line_a_form_workload_and_builds(monkeypatch):
    built: list[dict] = []

    def build(opts, path, common):
        built.append(common)
        return synthetic.build_random(opts, path, common)

    family = Family("throwaway", build, slot=70, about="the test's own family")
    monkeypatch.setattr(synthetic, "FAMILIES", [*synthetic.FAMILIES, family])

    parser = _load_parser()
    assert "  throwaway           the test's own family\n" in parser.format_help()
    opts = options_from_namespace(parser.parse_args(["--dataset-name", "throwaway", "--seed", "3"]))
    assert "throwaway" in form_workloads()
    make_workload(opts)
    assert built == [{"seed": 3}]
