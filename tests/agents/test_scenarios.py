"""Scenarios: how steps become turns, and how a plan's script becomes a scenario."""

from __future__ import annotations

import json

from plait.plan.model import Script
from plait.testing import Edit, Fail, Hang, Run, Scenario, Write, edit, fail, hang, run, scenario_from_script, write
from plait.testing.dialect import minimal_json
from plait.testing.scenario import group_turns, plan_turn
from plait.testing.tools import Flavor, answer_for, flavor_for


def test_fail_and_hang_do_not_consume_a_turn() -> None:
    scenario = Scenario([hang(1.5), write("a", "1"), fail(429, times=1), run("x")])
    first = plan_turn(scenario, 0, 0)
    assert first.hang == 1.5 and first.actions == (Write("a", "1"),)
    assert plan_turn(scenario, 1, 0).fail == Fail(429, None, 1)
    assert plan_turn(scenario, 1, 1).actions == (Run("x"),)
    assert plan_turn(scenario, 2, 0).actions == () and plan_turn(scenario, 2, 0).final_text == "done"


def test_a_permanent_failure_stays() -> None:
    scenario = Scenario([fail(529)])
    assert all(plan_turn(scenario, 0, n).fail == Fail(529) for n in range(5))


def test_aider_gets_every_action_in_one_turn() -> None:
    steps = [write("a", "1"), edit("b", "x", "y"), run("ls")]
    assert [len(actions) for _, actions in group_turns(steps, batch_edits=True)] == [3]
    assert [len(actions) for _, actions in group_turns(steps, batch_edits=False)] == [1, 1, 1]


def test_scenario_from_script_turns_edits_into_steps() -> None:
    script = Script(write={"src/a.py": "x = 1\n"}, append={"log.txt": "more\n"},
                    replace={"README.md": {"old": "new"}}, delete=["gone.txt"], run=["make"], delay="2s", fail=True)
    steps = scenario_from_script(script, latency=0.5)
    assert steps.latency == 0.5
    assert steps.steps == (Hang(2.0), Write("src/a.py", "x = 1\n"), Run("printf %s 'more\n' >> log.txt"),
                           Edit("README.md", "old", "new"), Run("rm -f gone.txt"), Run("make"),
                           Fail(500, "the rehearsal script asked to fail"))


def test_each_cli_gets_its_own_tools() -> None:
    assert flavor_for(["Write", "Bash", "Edit"]) is Flavor.CLAUDE
    assert flavor_for(["exec_command", "write_stdin"]) is Flavor.CODEX
    assert flavor_for(["exec", "wait", "sleep"]) is Flavor.CODEX_CODE_MODE
    assert flavor_for(["write_file", "replace", "run_shell_command"]) is Flavor.GEMINI
    assert flavor_for(["write", "edit", "bash"]) is Flavor.OPENCODE
    assert flavor_for([], "reply with a *file listing*") is Flavor.AIDER_WHOLE
    assert flavor_for(["search_web"]) is Flavor.UNKNOWN
    gemini = answer_for([edit("a.py", "1", "2")], Flavor.GEMINI, cwd="/w")
    assert gemini.calls[0].name == "replace" and gemini.calls[0].arguments["file_path"] == "/w/a.py"
    code_mode = answer_for([run("ls -l")], Flavor.CODEX_CODE_MODE)
    assert code_mode.calls[0].custom == 'const result = await tools.exec_command({"cmd": "ls -l"});\ntext(result);\n'
    assert answer_for([write("a", "b")], Flavor.UNKNOWN).calls == ()


def test_aider_whole_file_edit_uses_the_file_from_its_chat() -> None:
    transcript = "I added these files to the chat: a.py\n\na.py\n```\nx = 1\ny = 2\n```\n"
    answer = answer_for([edit("a.py", "y = 2", "y = 3")], Flavor.AIDER_WHOLE, transcript=transcript)
    assert answer.text == "a.py\n```\nx = 1\ny = 3\n```"
    assert answer_for([edit("b.py", "1", "2")], Flavor.AIDER_WHOLE).text == "I need to edit b.py."


def test_minimal_json_satisfies_the_schema() -> None:
    schema = {"type": "object", "required": ["next_speaker", "reasoning", "n"],
              "properties": {"next_speaker": {"type": "string", "enum": ["user", "model"]},
                             "reasoning": {"type": "string"}, "n": {"type": "number"}}}
    assert json.loads(json.dumps(minimal_json(schema))) == {"next_speaker": "user", "reasoning": "ok", "n": 1}
