"""Teachers that run in this process: any transformers causal LM, or vLLM's offline engine.

Concurrent `complete` calls are gathered into batches (requests with the same sampling
parameters) and generated in a worker thread, so the event loop keeps validating and writing
while the model runs.
"""
from __future__ import annotations

from typing import Any

from distill.logprobs import TopK
from distill.teachers.batching import Batcher
from distill.teachers.base import Completion, Request, TeacherError, finish


def _params(r: Request) -> tuple[Any, ...]:
    return (r.n, r.temperature, r.top_p, r.max_tokens, tuple(r.stop or ()), r.logprobs, bool(r.prefix))


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    cuts = [i for s in stop or () if (i := text.find(s)) >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def render_plain(messages: list[dict[str, str]]) -> str:
    """A few-shot prompt for models without a chat template: the turns one after another. The user
    turns end with the thought's cue, so the next assistant turn continues right after it."""
    return "\n".join(m["content"].rstrip("\n") for m in messages) + "\n"


class BatchedTeacher:
    """Gathers concurrent requests into batches for `_generate` (run in a thread)."""

    name: str
    batch_size: int = 8

    def __init__(self) -> None:
        self._batcher: Batcher[Request, list[Completion]] = Batcher(self._generate, lambda: self.batch_size, _params)

    def _generate(self, requests: list[Request]) -> list[list[Completion]]:
        raise NotImplementedError

    async def complete(self, request: Request) -> list[Completion]:
        return await self._batcher(request)

    async def aclose(self) -> None:
        await self._batcher.aclose()


class HFTeacher(BatchedTeacher):
    """`hf:MODEL`: a transformers causal LM (hub id or local path), batched `generate`."""

    def __init__(self, model: Any, tokenizer: Any = None, *, device: str | None = None, dtype: str = "auto",
                 batch_size: int = 8, trust_remote_code: bool = False):
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"hf:{model}" if isinstance(model, str) else f"hf:{type(model).__name__}"
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, trust_remote_code=trust_remote_code)
        if tokenizer is None:
            raise TeacherError("HFTeacher: pass a tokenizer along with a model object")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"  # decoder-only: pad on the left so every row ends at the prompt
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def render(self, messages: list[dict[str, str]], prefix: str = "") -> str:
        """The prompt text: the messages, then the answer so far (`Request.prefix`) that the model continues."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = render_plain(messages)
        return text + prefix

    def _generate(self, requests: list[Request]) -> list[list[Completion]]:
        import torch

        first, tok = requests[0], self.tokenizer
        enc = tok([self.render(r.messages, r.prefix) for r in requests], return_tensors="pt", padding=True).to(self.device)
        sampling = dict(do_sample=True, temperature=first.temperature, top_p=first.top_p) if first.temperature > 0 else dict(do_sample=False)
        with torch.inference_mode():
            out = self.model.generate(
                **enc, **sampling, max_new_tokens=first.max_tokens, num_return_sequences=first.n,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                return_dict_in_generate=True, output_logits=first.logprobs > 0,
            )
            # The raw logits (before temperature and top-p): kd learns the teacher's distribution at temperature 1.
            top = (torch.stack(out.logits, dim=1).float().log_softmax(-1).topk(first.logprobs, dim=-1)
                   if first.logprobs else None)
        new = out.sequences[:, enc["input_ids"].shape[1]:].tolist()
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        results: list[list[Completion]] = []
        for i, request in enumerate(requests):
            row = []
            for j, ids in enumerate(new[i * first.n : (i + 1) * first.n]):
                ended = tok.eos_token_id in ids
                ids = ids[: ids.index(tok.eos_token_id)] if ended else ids
                text, stopped = cut_at_stop(tok.decode(ids, skip_special_tokens=True), request.stop)
                reason = "stop" if ended or stopped or len(ids) < first.max_tokens else "length"
                done = finish(text, reason, prompt_lens[i] if j == 0 else 0, len(ids))
                if top is not None:  # every generated token, the EOS that ended the text included
                    row_index, steps = i * first.n + j, len(ids) + ended
                    done.logprobs = TopK(new[row_index][:steps], top.indices[row_index, :steps].cpu().numpy(),
                                         top.values[row_index, :steps].cpu().numpy()).encode()
                row.append(done)
            results.append(row)
        return results


class VLLMTeacher(BatchedTeacher):
    """`vllm:MODEL`: vLLM's offline engine (install the `vllm` extra); batches go to `LLM.chat`."""

    def __init__(self, model: str, *, batch_size: int = 256, **engine: Any):
        super().__init__()
        try:
            from vllm import LLM
        except ImportError:
            raise TeacherError("vllm is not installed: pip install 'distill-math[vllm]' (or use hf:MODEL)") from None
        self.name = f"vllm:{model}"
        self.batch_size = batch_size
        self.llm = LLM(model=model, **engine)

    def _generate(self, requests: list[Request]) -> list[list[Completion]]:
        from vllm import SamplingParams

        first = requests[0]
        if first.logprobs:
            raise TeacherError("vllm: --logprobs is not wired for the offline engine yet; serve the model with "
                               "`vllm serve` and use openai:MODEL --base-url ...")
        params = SamplingParams(n=first.n, temperature=first.temperature, top_p=first.top_p,
                                max_tokens=first.max_tokens, stop=first.stop)
        # A batch either continues prefixes or starts answers (`_params`): the chat template's choice is the batch's.
        cont = bool(first.prefix)
        outputs = self.llm.chat([r.messages + [{"role": "assistant", "content": r.prefix}] if cont else r.messages
                                 for r in requests], params, use_tqdm=False,
                                add_generation_prompt=not cont, continue_final_message=cont)
        return [
            [finish(o.text, o.finish_reason, len(out.prompt_token_ids or []) if j == 0 else 0, len(o.token_ids))
             for j, o in enumerate(out.outputs)]
            for out in outputs
        ]
