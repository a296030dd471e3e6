from __future__ import annotations

import re

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from distill.checking import Checker
from distill.cues import student_input
from distill.records import InputError
from distill.thoughts import thought_names

THOUGHTS = tuple(thought_names())
from distill.teachers.base import Request
from distill.teachers.extract import extract_rationale
from distill.world import EOT_NATURAL, FAMILIES, generate_problems, load_world
from distill.world.errors import KINDS
from distill.world.generate import split_of
from distill.world.problem import Problem
from distill.world.teacher import WorldTeacher
from solvers.answers import extract_answer, outcome_correct
from solvers.equations import solve_eot
from solvers.executor import Executor
from solvers.outcome import Outcome


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    with Executor() as ex:
        yield ex


def check(executor: Executor, items: list[tuple[str, str]]) -> list[Outcome]:
    """Outcomes of (thought, rationale) pairs through our own checkers."""
    pot = iter(executor.run_many([text for thought, text in items if thought == "pot"]))
    with Checker("tir") as checker:
        tir = iter(checker.check([text for thought, text in items if thought == "tir"]))
    solve = {"pot": lambda x: next(pot), "tir": lambda x: next(tir), "cot": extract_answer, "eot": solve_eot}
    return [solve[t](x) for t, x in items]


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return generate_problems("train", 20 * len(FAMILIES)) + generate_problems("test", 5 * len(FAMILIES))


def test_families_are_many_and_multi_step(problems: list[Problem]) -> None:
    assert len(FAMILIES) >= 10 and EOT_NATURAL <= set(FAMILIES)
    assert Counter(p.family for p in problems) == {f: 25 for f in FAMILIES}
    for p in problems:
        assert 2 <= len(p.steps) <= 5 and isinstance(p.answer, int) and p.answer > 0
    for family in FAMILIES:  # wordings, names and numbers vary
        same = [p for p in problems if p.family == family]
        assert len({p.ask for p in same}) > 1 and len({p.answer for p in same}) > 3


def test_gold_rationales_are_correct_for_every_family(problems: list[Problem], executor: Executor) -> None:
    items = [(t, p.render(t, variant)) for p in problems for t in THOUGHTS for variant in (0, 7)]
    outcomes = check(executor, items)
    wrong = [(p.family, t, o) for (t, _), o, p in zip(items, outcomes, [p for p in problems for _ in range(2 * len(THOUGHTS))])
             if not outcome_correct(o, p.answer)]
    assert not wrong, wrong[:5]


def test_rationale_formats(problems: list[Problem]) -> None:
    for p in problems:
        assert p.render("cot").endswith(f"The answer is {p.answer}.")
        assert p.render("pot").splitlines()[-1] == f"ans = {p.answer_name}"
        eot = p.render("eot").splitlines()
        assert eot[-1] == f"ans = {p.answer_name}" and eot[0].startswith("% ")
        if p.family in EOT_NATURAL:
            assert any(line.endswith(" = x") for line in eot)


def test_generation_is_deterministic_and_prefix_stable() -> None:
    a, b = generate_problems("train", 60, seed=3), generate_problems("train", 30, seed=3)
    assert a[:30] == b and generate_problems("train", 60, seed=3) == a
    assert [p.question for p in generate_problems("train", 30, seed=4)] != [p.question for p in b]
    assert [p.id for p in b[:2]] == ["world:train/s3-0", "world:train/s3-1"]
    rec = generate_problems("test", 1)[0].to_record()
    assert (rec.id, rec.source) == ("world:test/0", "world:test") and rec.answer == generate_problems("test", 1)[0].answer


def test_train_and_test_are_disjoint() -> None:
    train = {p.question for p in generate_problems("train", 1500)}
    test = {p.question for p in generate_problems("test", 400)}
    assert len(train) == 1500 and len(test) == 400 and not train & test
    assert all(split_of(q) == "test" for q in test)


def test_load_world_specs() -> None:
    ds = load_world("world:train?n=30&seed=1&families=ages,rates")
    assert ds.name == "world:train" and len(ds.records) == 30
    assert {r.meta["family"] for r in ds.records} == {"ages", "rates"}
    assert len(load_world("world:test").records) == 500
    for bad in ("world:dev", "world:train?n=x", "world:train?size=3", "world:train?families=nope"):
        with pytest.raises(InputError):
            load_world(bad)


def teacher_samples(teacher: WorldTeacher, problems: list[Problem], samples: int) -> list[tuple[Problem, str, str, str | None]]:
    out = []
    for p in problems:
        for thought in THOUGHTS:
            for s in range(samples):
                raw, kind = teacher.write(p.question, thought, s)
                out.append((p, thought, extract_rationale(thought, raw), kind))
    return out


def test_teacher_injected_errors_are_rejected(problems: list[Problem], executor: Executor) -> None:
    rows = teacher_samples(WorldTeacher(error_rate=1.0, seed=1), problems, 2)
    outcomes = check(executor, [(t, x) for _, t, x, _ in rows])
    accepted = Counter((t, k) for (p, t, _, k), o in zip(rows, outcomes) if outcome_correct(o, p.answer))
    kinds = Counter((t, k) for _, t, _, k in rows)
    assert set(kinds) == {(t, k) for t, ks in KINDS.items() for k in ks}  # every kind occurs
    rate = 1 - sum(accepted.values()) / len(rows)
    print(f"\ninjected teacher errors rejected by the checkers: {rate:.2%} of {len(rows)} ({dict(accepted) or 'none accepted'})")
    assert rate >= 0.95


def test_teacher_clean_answers_pass_and_rate_holds(problems: list[Problem], executor: Executor) -> None:
    rows = teacher_samples(WorldTeacher(error_rate=0.0), problems, 1)
    assert all(k is None for *_, k in rows)
    outcomes = check(executor, [(t, x) for _, t, x, _ in rows])
    assert all(outcome_correct(o, p.answer) for (p, *_), o in zip(rows, outcomes))
    injected = [k for *_, k in teacher_samples(WorldTeacher(), problems, 3)]
    assert 0.15 < sum(k is not None for k in injected) / len(injected) < 0.25


def test_teacher_is_deterministic_and_speaks_the_protocol(problems: list[Problem]) -> None:
    teacher = WorldTeacher.from_spec("error_rate=0.5,seed=3")
    assert (teacher.error_rate, teacher.seed) == (0.5, 3) and teacher.name.startswith("world:")
    p = problems[0]
    ask = lambda n, temperature=0.7, **meta: asyncio.run(teacher.complete(Request(  # noqa: E731
        [{"role": "user", "content": student_input(p.question, "pot")}], n=n, temperature=temperature,
        meta={"id": p.id, "thought": "pot", **meta})))
    many = ask(8)
    assert [c.text for c in ask(3)] == [c.text for c in many[:3]]  # call order does not matter
    assert len({c.text for c in many}) > 1 and all(c.error is None and c.completion_tokens for c in many)
    assert len({c.text for c in ask(3, temperature=0)}) == 1
    assert all(teacher.injected[p.id, "pot", c.text] == teacher.write(p.question, "pot", i)[1] for i, c in enumerate(many))
    teacher.search = 20  # a question not in the world is searched for in only a few candidates
    unknown = asyncio.run(teacher.complete(Request([], meta={"question": "What is 2 + 2?", "thought": "cot"})))
    assert unknown[0].text is None and unknown[0].error == "unknown-question"
    with pytest.raises(InputError):
        WorldTeacher.from_spec("error_rate=2")


def test_teacher_finds_questions_of_seeded_worlds_without_a_registry_hit() -> None:
    p = generate_problems("train", 3, seed=7)[2]
    assert WorldTeacher().write(p.question, "cot", 0, world_seed=7) is not None


def test_tokenizer_round_trips_rationales_and_suits_t5(problems: list[Problem], tmp_path) -> None:
    import torch
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    from distill.train.tokenizer import train_tokenizer

    texts = [x for p in problems for t in THOUGHTS for x in (student_input(p.question, t), p.render(t))]
    tok = train_tokenizer(texts[: len(texts) // 2], vocab_size=600)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    for text in texts:  # the second half was not seen in training
        ids = tok(text).input_ids
        assert ids[-1] == tok.eos_token_id and tok.decode(ids, skip_special_tokens=True) == text
    assert [t for t in tok.tokenize("ans = 1234 + 56") if any(c.isdigit() for c in t)] == list("123456")
    tok.save_pretrained(tmp_path)
    again = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert again(texts[-1]).input_ids == tok(texts[-1]).input_ids and again.pad_token == "<pad>"
    config = T5Config(vocab_size=len(tok), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    batch = tok(texts[:2], text_target=texts[2:4], padding=True, return_tensors="pt")
    loss = T5ForConditionalGeneration(config)(**batch).loss
    assert torch.isfinite(loss)


def test_whole_number_tokenizer_keeps_numbers_whole_and_round_trips(problems: list[Problem]) -> None:
    from distill.train.tokenizer import train_tokenizer

    texts = [x for p in problems for t in THOUGHTS for x in (student_input(p.question, t), p.render(t))]
    tok = train_tokenizer(texts[: len(texts) // 2], vocab_size=2048, whole_numbers=True)
    for text in texts:  # the second half was not seen in training
        assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text
    seen = {n for text in texts[: len(texts) // 2] for n in re.findall(r"\d+", text)}
    frequent = max(seen, key=lambda n: sum(text.count(n) for text in texts))
    assert [t.strip("Ġ") for t in tok.tokenize(f"x = {frequent}") if t.strip("Ġ").isdigit()] == [frequent]
    assert tok.decode(tok("ans = 987654321").input_ids, skip_special_tokens=True) == "ans = 987654321"  # unseen: pieces


def test_generate_prints_how_many_injected_errors_were_rejected(tmp_path) -> None:
    from click.testing import CliRunner

    from distill.cli import main
    from distill.world.audit import audit

    out = tmp_path / "rationales.jsonl"
    args = ["generate", "--data", "world:train?n=40", "--teacher", "world:error_rate=0.5", "--thought", "pot,eot,cot",
            "--samples", "3", "--n-per-request", "2", "--no-progress", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "injected teacher errors rejected by the checkers" in " ".join(result.output.split())
    found = audit(out, WorldTeacher(error_rate=0.5), round_size=2)  # samples 0-1 in round 0, sample 2 in round 1
    assert found.unmatched == 0 and found.injected + found.clean == 40 * 3 * 3
    assert 0.35 < found.injected / (40 * 9) < 0.65
    assert found.rejection_rate == 1.0 and found.clean_rejected == 0
