"""Bad seed input, bad options and the resume journal's repair of a half-written line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.evol import cli
from tuner.evol.journal import CallJournal
from tuner.evol.records import load_seed
from tuner.generation import GenerationResult
from tuner.jsonl import InputError

REPO = Path(__file__).resolve().parents[2]
GOOD = {"instruction": "Reverse a string.", "input": "s = 'abc'", "output": "s[::-1]"}


def write_array(path: Path, records: list) -> Path:
    # Pretty-printed like Code Alpaca: each record spans several lines.
    path.write_text(json.dumps(records, indent=4) + "\n")
    return path


def test_code_alpaca_array_and_jsonl_read_alike(tmp_path):
    records = [GOOD, {"instruction": "Add two numbers.", "output": "a + b"}]
    from_array = load_seed(write_array(tmp_path / "seed.json", records))
    jsonl = tmp_path / "seed.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert from_array == load_seed(jsonl)
    assert [i.id for i in from_array] == ["s0", "s1"]
    assert from_array[0].instruction == "Reverse a string.\ns = 'abc'"


def test_shared_code_alpaca_sample_loads(shared_data):
    items = load_seed(shared_data / "codealpaca" / "code_alpaca_2k.json")
    assert len(items) == 2017 and all(i.instruction for i in items)


@pytest.mark.parametrize("records, line, message", [
    ([GOOD, {"input": "", "output": "x"}], 7, 'record has no "instruction" field'),
    ([GOOD, GOOD, {"instruction": "x", "input": ""}], 12, 'record has no "output" field'),
    ([GOOD, {"instruction": "  ", "output": "x"}], 7, 'field "instruction" is empty'),
    ([{"instruction": ["a"], "output": "x"}], 2, 'field "instruction" must be a string, got list'),
    ([GOOD, "just a string"], 7, "expected a JSON object, got str"),
])
def test_bad_records_name_file_line_and_field(tmp_path, records, line, message):
    path = write_array(tmp_path / "seed.json", records)
    with pytest.raises(InputError) as e:
        load_seed(path)
    assert str(e.value) == f"{path}:{line}: {message}"


def test_malformed_json_names_the_line(tmp_path):
    path = write_array(tmp_path / "seed.json", [GOOD, GOOD])
    lines = path.read_text().splitlines()
    lines[8] = lines[8].replace('"input":', '"input"')  # line 9: a missing colon
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match=rf"^{path}:9: malformed JSON \(Expecting ':' delimiter"):
        load_seed(path)

    jsonl = tmp_path / "seed.jsonl"
    jsonl.write_text(json.dumps(GOOD) + "\n\n" + '{"instruction": "x", "output": "y"\n')
    with pytest.raises(InputError, match=rf"^{jsonl}:3: malformed JSON"):
        load_seed(jsonl)


def test_truncated_array_names_the_line(tmp_path):
    path = write_array(tmp_path / "seed.json", [GOOD, GOOD])
    path.write_text(path.read_text().rstrip().rstrip("]").rstrip())
    with pytest.raises(InputError, match=rf"^{path}:\d+: malformed JSON \(expected ',' or '\]', got end of file\)"):
        load_seed(path)


def test_cli_reports_bad_seed_in_one_line_and_keeps_what_was_written(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "calls.jsonl").write_text('{"key": "r1/evolve/s0", "prompt_sha": "x", "texts": ["t"], "error": null}\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    seed = write_array(tmp_path / "seed.json", [GOOD, {"input": "", "output": "x"}])
    proc = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "evolve", "--seed", str(seed), "--out", str(out),
         "--teacher-url", "http://127.0.0.1:9/v1", "--teacher-model", "m"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
    )
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert proc.stderr.strip() == f'tuner evolve: {seed}:7: record has no "instruction" field'
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_rejects_missing_or_double_teacher(tmp_path, capsys):
    seed = write_array(tmp_path / "seed.json", [GOOD])
    base = ["--seed", str(seed), "--out", str(tmp_path / "o")]
    assert cli.main(base) == cli.EXIT_BAD_INPUT
    assert cli.main(base + ["--teacher-path", "m", "--teacher-url", "http://x/v1", "--teacher-model", "m"]) == 2
    assert cli.main(base + ["--teacher-url", "http://x/v1"]) == 2
    err = capsys.readouterr().err
    assert "give either --teacher-url with --teacher-model, or --teacher-path" in err
    assert "--teacher-url needs --teacher-model" in err
    assert not (tmp_path / "o").exists()


def test_cli_names_a_missing_decontamination_file(tmp_path, capsys):
    seed = write_array(tmp_path / "seed.json", [GOOD])
    code = cli.main(["--seed", str(seed), "--out", str(tmp_path / "o"), "--teacher-url", "http://x/v1",
                     "--teacher-model", "m", "--skip-benchmark", "mbpp",
                     "--decontaminate", str(tmp_path / "nope.jsonl")])
    assert code == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == f"tuner evolve: {tmp_path / 'nope.jsonl'}: no such file"


def test_journal_drops_a_half_written_last_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "calls.jsonl"
    with CallJournal(path) as journal:
        journal.record("a", "sha-a", GenerationResult(texts=["first"]))
        journal.record("b", "sha-b", GenerationResult(texts=[], error="HTTP 500"))
        journal.record("b", "sha-b", GenerationResult(texts=["second"]))
        journal.record("c", "sha-c", GenerationResult(texts=[], error="timeout"))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"key": "d", "prompt_sha": "sha-d", "te')  # killed mid-write
    with CallJournal(path) as journal:
        assert journal.repaired_partial_line
        assert journal.finished("a", "sha-a").texts == ["first"]
        assert journal.finished("b", "sha-b").texts == ["second"]
        assert journal.finished("a", "other-prompt") is None
        assert journal.finished("c", "sha-c") is None
        assert journal.finished("d", "sha-d") is None
        journal.record("d", "sha-d", GenerationResult(texts=["fourth"]))
    assert path.read_bytes().startswith(whole)
    with CallJournal(path) as journal:
        assert not journal.repaired_partial_line
        assert journal.finished("d", "sha-d").texts == ["fourth"]


def test_offline_engine_options_reach_the_teacher_and_need_a_teacher_path(tmp_path):
    common = ["--seed", str(tmp_path / "seed.json"), "--out", str(tmp_path / "out")]
    engine = ["--tensor-parallel-size", "2", "--data-parallel-size", "1", "--gpu-memory-utilization", "0.5",
              "--max-num-seqs", "16", "--max-model-len", "1024"]
    _, teacher = cli.configs_from_args(cli.build_parser().parse_args(common + ["--teacher-path", "m"] + engine))
    assert teacher.engine.engine_kwargs() == {"tensor_parallel_size": 2, "data_parallel_size": 1,
                                              "gpu_memory_utilization": 0.5, "max_num_seqs": 16,
                                              "max_model_len": 1024}
    served = common + ["--teacher-url", "http://127.0.0.1:9/v1", "--teacher-model", "m", "--tensor-parallel-size", "2"]
    with pytest.raises(ValueError, match=r"^--tensor-parallel-size: offline vLLM options, which need --teacher-path"):
        cli.configs_from_args(cli.build_parser().parse_args(served))
    with pytest.raises(ValueError, match=r"--max-num-seqs must be >= 1, got 0"):
        cli.configs_from_args(cli.build_parser().parse_args(common + ["--teacher-path", "m", "--max-num-seqs", "0"]))
