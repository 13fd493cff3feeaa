"""`--help` is documentation: every option of every command says what it does."""

from __future__ import annotations

import argparse

from mcusim.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_option_has_help_text():
    parser = build_parser()
    subs = _subparsers(parser)
    assert {"demo", "run", "step", "budget", "train", "profile", "verify", "mcus", "build",
            "cost-model", "bench"} <= set(subs)
    missing = []
    for name, sub in [("mcusim", parser), *subs.items()]:
        assert sub.description or name == "mcusim", f"{name} has no description"
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "options without help text: " + ", ".join(missing)


def test_cost_model_tables_have_a_legend(capsys, monkeypatch):
    from mcusim.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    for core, words in (("m0plus", ("taken:", "P = the pipeline refill")),
                        ("m4", ("taken:", "status: primary")),
                        ("m7", ("latency:", "issue:", "units:", "energy:"))):
        assert main(["cost-model", core]) == 0
        out = " ".join(capsys.readouterr().out.split())
        for w in words:
            assert w in out, (core, w)


def test_bare_mcusim_is_one_line(capsys):
    """No command: one error line naming the commands, exit 2 (the help is --help)."""
    from mcusim import cli

    assert cli.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("mcusim: error: no command given")
    for command in ("demo", "run", "step", "budget", "train", "profile"):
        assert command in err
