"""The service between the routes and the batcher: each request's sentences tokenized once, on arrival,
and an overloaded server refusing before it tokenizes anything."""
import asyncio
import threading
import time

import pytest

from tests.helpers.batching import Recorder, job, started
from transformer_mt.config import DecodeConfig
from transformer_mt.data.tokenizer import source_ids
from transformer_mt.decoding.translator import Alignment
from transformer_mt.serving import translation
from transformer_mt.serving.requests import BadRequest
from transformer_mt.serving.settings import Limits
from transformer_mt.serving.translation import Service


class CountingTokenizer:
    """Code points as token ids; counts every call."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode_batch(self, texts):
        self.calls.append(list(texts))
        return [list(map(ord, text)) for text in texts]

    def encode_with_offsets(self, texts):
        self.calls.append(list(texts))
        return [(list(map(ord, text)), [(i, i + 1) for i in range(len(text))]) for text in texts]


class Tokenizers:
    def __init__(self):
        self.src = CountingTokenizer()


class Translator(Recorder):
    """A Recorder behind the attributes the service reads; its text path must never be taken."""
    max_positions = 8

    def __init__(self, **options):
        super().__init__(**options)
        self.tokenizers, self.encoded = Tokenizers(), []

    def translate_encoded(self, sources, decode, nbest, align=None):
        """Upper case keeps each character where it was: character i of a translation attends to i."""
        self.encoded.append(sources)
        done = super().translate_encoded([ids[:-1] for ids in sources], decode, nbest)  # EOS off
        for wanted, hyps in zip(align or [], done):
            for hyp in hyps if wanted else []:
                hyp.alignment = Alignment([(i, i + 1) for i in range(len(hyp.text))], list(range(len(hyp.text))))
        return done

    def translate(self, *args, **kwargs):
        raise AssertionError("the batcher's worker tokenized again")



def test_a_request_is_tokenized_once_and_the_worker_decodes_those_ids():
    translator = Translator()
    batcher = started(translator, max_wait_ms=0)
    service = Service(translator, batcher, Limits())
    texts = ["ab. Cd.", "a sentence far longer than eight positions"]
    done = asyncio.run(service.translate(texts, DecodeConfig(), 1))
    batcher.stop(5)
    sentences = ["ab.", "Cd.", texts[1]]
    assert translator.tokenizers.src.calls == [sentences]
    assert translator.encoded == [[source_ids(list(map(ord, s)), 8) for s in sentences]]
    assert [t[0].text for t in done.translations] == ["AB. CD.", texts[1][:7].upper()]
    assert done.notes == [f"text 2 has {len(texts[1])} tokens: cut to the model's 7"]


def test_an_html_request_is_read_off_the_loop_tokenized_once_and_its_tags_placed_by_alignment():
    translator = Translator()
    batcher = started(translator, max_wait_ms=0)
    service = Service(translator, batcher, Limits())

    async def html(texts):
        return await service.translate_html(await service.read_html(texts), DecodeConfig(), 1)
    done = asyncio.run(html(["<p>ab <b>cd</b>. Gh <i>ij</i>.</p><ul><li>kl</li></ul>"]))
    batcher.stop(5)
    assert translator.tokenizers.src.calls == [["ab cd.", "Gh ij.", "kl"]]
    assert done.translations[0][0].text == "<p>AB <b>CD</b>. GH <i>IJ</i>.</p><ul><li>KL</li></ul>"


def test_a_request_refused_for_a_full_queue_costs_no_tokenizing_and_no_html_reading(monkeypatch):
    hold = threading.Event()
    translator = Translator(hold=hold)
    batcher = started(translator, max_wait_ms=0, queue_sentences=2)
    service = Service(translator, batcher, Limits())
    decoding = batcher.submit(job("a"))
    time.sleep(0.1)
    waiting = batcher.submit(job("b", "c"))  # the queue is full
    with pytest.raises(BadRequest) as refused:
        asyncio.run(service.translate(["One more."], DecodeConfig(), 1))
    assert refused.value.status == 429 and translator.tokenizers.src.calls == []
    monkeypatch.setattr(translation, "_read_pages", lambda texts: pytest.fail("an HTML page was read"))
    with pytest.raises(BadRequest) as refused:
        asyncio.run(service.read_html(["<p>One more.</p>"]))
    assert refused.value.status == 429
    hold.set()
    decoding.result(5), waiting.result(5)
    batcher.stop(5)
