"""Teacher backends, rationale extraction and the shipped prompts."""
from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import Faults, TeacherServer  # noqa: E402

from distill.thoughts import thought_names  # noqa: E402

THOUGHTS = tuple(thought_names())
from distill.teachers import Request, TeacherError, make_teacher  # noqa: E402
from distill.teachers.extract import extract_rationale  # noqa: E402
from distill.teachers.limits import Bucket, backoff, retry_after  # noqa: E402
from distill.teachers.openai_compat import parse_choices  # noqa: E402
from distill.teachers.prompts import load_prompt, load_prompts  # noqa: E402
from solvers.answers import extract_answer, is_correct  # noqa: E402

Q = "Ann has 3 apples and buys 4 more. How many apples does she have?"
SCRIPT = {Q: {"cot": ["3 + 4 = 7. The answer is 7.", "3 + 4 = 8. The answer is 8."]}}


def ask(teacher, n: int = 1, question: str = Q) -> list:
    async def go():
        try:
            return await teacher.complete(Request([{"role": "user", "content": f"Question: {question}\nLet's think step by step.\n"}], n=n))
        finally:
            await teacher.aclose()
    return asyncio.run(go())


# --- prompts --------------------------------------------------------------------------------

def test_shipped_prompts_have_eight_exemplars_and_the_student_cue():
    from distill.cues import load_cues

    cues = load_cues()
    for thought, prompt in load_prompts(list(THOUGHTS)).items():
        assert len(prompt.exemplars) == 8
        assert prompt.cue == cues[thought]
        msgs = prompt.messages("What is 2 + 2?")
        assert msgs[0]["role"] == "system" and len(msgs) == 1 + 2 * 8 + 1
        assert msgs[-1]["content"].startswith("Question: What is 2 + 2?\n")


def test_cot_exemplars_verify():
    for ex in load_prompt("prompts/cot.yaml").exemplars:
        assert ex.rationale.rstrip().endswith(f"The answer is {ex.answer}.")
        assert is_correct(extract_answer(ex.rationale).prediction, ex.answer)


def test_pot_exemplars_run_in_the_executor():
    from solvers.executor import Executor

    exemplars = load_prompt("prompts/pot.yaml").exemplars
    executor = Executor(workers=1)
    try:
        outcomes = executor.run_many([ex.rationale for ex in exemplars])
    finally:
        executor.close()
    for ex, outcome in zip(exemplars, outcomes):
        assert outcome.is_ok and is_correct(outcome.prediction, ex.answer), (ex.question, outcome)


def test_eot_exemplars_solve():
    from solvers.equations import solve_eot

    for ex in load_prompt("prompts/eot.yaml").exemplars:
        assert ex.rationale.splitlines()[-1].startswith("ans = ")
        outcome = solve_eot(ex.rationale)
        assert outcome.is_ok and is_correct(outcome.prediction, ex.answer), (ex.question, outcome)


def test_prompt_hash_changes_with_content(tmp_path):
    text = Path("prompts/cot.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(text.replace("careful math tutor", "patient math tutor"))
    assert load_prompt(tmp_path / "mine.yaml").hash != load_prompt("prompts/cot.yaml").hash


# --- extraction -----------------------------------------------------------------------------

def test_extract_cot_stops_after_the_answer_sentence():
    raw = "3 + 4 = 7.\nThe answer is 7. I hope this helps!\n\nQuestion: next one"
    assert extract_rationale("cot", raw) == "3 + 4 = 7.\nThe answer is 7."


def test_extract_pot_takes_the_fenced_code():
    raw = "Here is the code:\n```python\na = 3\nans = a + 4\n```\nThis prints 7."
    assert extract_rationale("pot", raw) == "a = 3\nans = a + 4"
    assert extract_rationale("pot", "a = 3\nans = a + 4\n") == "a = 3\nans = a + 4"


def test_extract_eot_keeps_the_system_up_to_ans():
    raw = "Sure! Here is the system.\n% Assume x apples:\ntotal = x\n% distance = speed x time\n3 + 4 = total\nans = total.\nSo she has 7."
    assert extract_rationale("eot", raw) == "% Assume x apples:\ntotal = x\n% distance = speed x time\n3 + 4 = total\nans = total"


# --- pacing ---------------------------------------------------------------------------------

def test_retry_after_forms():
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
    assert backoff(0, hint=3.0) >= 3.0 and backoff(10, cap=1.0) <= 1.0


def test_bucket_paces_requests():
    async def go():
        bucket = Bucket(per_minute=600)  # 10/s, starts with a minute's worth
        await bucket.take(600)
        start = time.monotonic()
        await bucket.take(3)
        return time.monotonic() - start
    assert 0.25 < asyncio.run(go()) < 1.0


def test_parse_choices_marks_malformed_and_truncated():
    assert [c.error for c in parse_choices(b'{"choices": [', 2)] == ["malformed", "malformed"]
    body = b'{"choices": [{"message": {"content": "The ans"}, "finish_reason": "length"}, {"message": {"content": null}}],' \
           b' "usage": {"prompt_tokens": 10, "completion_tokens": 5}}'
    a, b = parse_choices(body, 2)
    assert (a.error, a.text, a.prompt_tokens, a.completion_tokens) == ("truncated", "The ans", 10, 3)
    assert (b.error, b.prompt_tokens, b.completion_tokens) == ("malformed", 0, 2)


# --- OpenAI-compatible backend against the fixture server ------------------------------------

def test_openai_teacher_samples_n_in_one_call():
    with TeacherServer(SCRIPT) as server:
        got = ask(make_teacher("openai:m", base_url=server.url), n=2)
        assert [c.text for c in got] == SCRIPT[Q]["cot"] and server.requests == 1
        assert got[0].prompt_tokens > 0 and all(c.error is None for c in got)


def test_openai_teacher_splits_n_when_the_server_ignores_it():
    with TeacherServer(SCRIPT, supports_n=False) as server:
        teacher = make_teacher("openai:m", base_url=server.url)
        got = ask(teacher, n=3)
        assert len(got) == 3 and server.requests == 3 and teacher.n_mode == "split"


def test_openai_teacher_honours_retry_after_and_retries_faults():
    faults = Faults(sequence=["429", "500", "drop", ""], retry_after="1")
    with TeacherServer(SCRIPT, faults=faults) as server:
        teacher = make_teacher("openai:m", base_url=server.url)
        start = time.monotonic()
        got = ask(teacher)
        assert time.monotonic() - start >= 1.0  # waited as the 429 asked
        assert got[0].text == SCRIPT[Q]["cot"][0] and server.requests == 4
        assert teacher.retries == {"http-429": 1, "http-500": 1, "connection": 1}


def test_openai_teacher_times_out_slow_answers_and_gives_up_after_retries():
    with TeacherServer(SCRIPT, faults=Faults(rates={"slow": 1.0}, slow_s=1.0)) as server:
        got = ask(make_teacher("openai:m", base_url=server.url, timeout=0.2, max_retries=1))
        assert got[0].error == "timeout" and got[0].text is None and server.requests == 2


def test_openai_teacher_records_malformed_and_truncated_answers():
    with TeacherServer(SCRIPT, faults=Faults(sequence=["malformed", "truncated"])) as server:
        assert ask(make_teacher("openai:m", base_url=server.url))[0].error == "malformed"
        got = ask(make_teacher("openai:m", base_url=server.url))[0]
        assert got.error == "truncated" and got.finish_reason == "length" and server.requests == 2


def test_openai_teacher_sends_the_prefix_as_the_assistants_message():
    tir = "I add.\n```python\nprint(3 + 4)\n```\n```output\n0\n```\nSo {output}. The answer is 7."
    prefix = "I add.\n```python\nprint(3 + 4)\n```\n```output\n7\n```\n"
    request = Request([{"role": "user", "content": f"Question: {Q}\nLet's reason and run code as we go.\n"}], prefix=prefix)
    with TeacherServer({Q: {"tir": [tir]}}) as server:
        for options in ({}, {"continue_final_message": True}):
            teacher = make_teacher("openai:m", base_url=server.url, **options)

            async def go():
                try:
                    return await teacher.complete(request)
                finally:
                    await teacher.aclose()

            assert asyncio.run(go())[0].text == "So 7. The answer is 7."
        assert server.prefixes == [prefix, prefix] and server.continued == 1


def test_make_teacher_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(TeacherError, match="unknown teacher"):
        make_teacher("gpt-4o")
    with pytest.raises(TeacherError, match="API key"):
        make_teacher("openai:gpt-4o-mini")
    with pytest.raises(TeacherError, match="not an option of openai"):
        make_teacher("openai:m", base_url="http://x/v1", device="cpu")


def test_openai_teacher_reads_the_environment(monkeypatch):
    with TeacherServer(SCRIPT) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        assert ask(make_teacher("openai:m"))[0].text == SCRIPT[Q]["cot"][0]


# --- local transformers backend ------------------------------------------------------------

def save_tiny_llama(path, layers: int = 2) -> None:
    """A random tiny LLaMA with ByT5's byte tokenizer (needs no download), saved as a local model dir."""
    transformers = pytest.importorskip("transformers")
    tok = transformers.ByT5Tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=4, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)


def test_hf_teacher_generates_with_a_tiny_random_model(tmp_path):
    save_tiny_llama(tmp_path)
    teacher = make_teacher(f"hf:{tmp_path}", device="cpu", batch_size=4)

    async def go():
        requests = [Request([{"role": "user", "content": f"Question: q{i}?\n"}], n=2, max_tokens=6) for i in range(3)]
        try:
            return await asyncio.gather(*(teacher.complete(r) for r in requests))
        finally:
            await teacher.aclose()

    results = asyncio.run(go())
    assert [len(r) for r in results] == [2, 2, 2]
    for row in results:  # a random model may sample EOS first: an empty completion that stopped
        assert row[0].prompt_tokens > 0 and all(0 <= c.completion_tokens <= 6 for c in row)
        assert all(isinstance(c.text, str) and c.finish_reason in ("stop", "length") for c in row)
        assert all(c.finish_reason == "stop" for c in row if c.completion_tokens == 0)
    assert sum(c.completion_tokens for row in results for c in row) > 0


def test_local_teachers_continue_the_prefix(tmp_path):
    save_tiny_llama(tmp_path)
    teacher = make_teacher(f"hf:{tmp_path}", device="cpu")
    messages = [{"role": "user", "content": "Question: 2 + 2?\n"}]
    plain, cont = Request(messages, max_tokens=4), Request(messages, max_tokens=4, prefix="```python\nprint(4)\n```\n")
    replica = teacher.replicas[0]
    assert replica.render(messages, cont.prefix) == replica.render(messages) + cont.prefix

    async def go():
        try:
            return await asyncio.gather(teacher.complete(plain), teacher.complete(cont))
        finally:
            await teacher.aclose()

    (a,), (b,) = asyncio.run(go())
    assert b.prompt_tokens == a.prompt_tokens + len(cont.prefix.encode())  # byte tokenizer: one token a byte
