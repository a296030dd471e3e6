"""A small byte-level BPE tokenizer trained on the fly for students trained from scratch
(`tokenizer: train-bpe` or `train-bpe-numbers` in a train config; the quickstart uses the latter).

Digits are single tokens (`train-bpe`: the student learns arithmetic digit by digit) or each
number is one pre-token (`train-bpe-numbers`: frequent numbers become single tokens). Byte-level
pieces keep every space and newline, so decode(encode(text)) returns the text exactly. Special
tokens come first, as T5 expects: <pad>=0, </s>=1, <unk>=2; encoding appends </s>.
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "</s>", "<unk>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, *, whole_numbers: bool = False) -> PreTrainedTokenizerFast:
    """Train on `texts` (questions, cues and rationales) and wrap for `transformers`.

    `whole_numbers`: a number is one pre-token instead of one per digit, so BPE learns the frequent
    numbers of the data as single tokens (a rarer number still splits into pieces, and decoding stays
    exact): copying a number from the question is then one token, not one per digit."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d+" if whole_numbers else r"\d"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)
