"""What every translating route shares: checking the text against the limits, queueing it for the
batcher, and waiting for its results within the request's deadline; for HTML, reading the page and
writing it back (markup.py) off the event loop, with each inline tag placed by alignment (placement.py)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..config import DecodeConfig
from ..data.tokenizer import source_ids, token_budget
from ..decoding.translator import TextTranslator, Translation
from ..errors import UserError
from .batcher import Batcher, DeadlinePassed, Job, QueueFull, WorkerStopped
from .markup import BadHtml, Page
from .paragraphs import Paragraph
from .placement import place
from .requests import BadRequest
from .settings import Limits


@dataclass
class Translated:
    translations: list[list[Translation]]  # per text, its n-best
    notes: list[str]  # e.g. a text cut at the model's positions


class Service:
    def __init__(self, translator: TextTranslator, batcher: Batcher, limits: Limits):
        self.translator, self.batcher, self.limits = translator, batcher, limits

    def check_texts(self, texts: list) -> list[str]:
        if not texts:
            raise BadRequest("no text to translate: the list is empty")
        if len(texts) > self.limits.max_texts:
            raise BadRequest(f"{len(texts)} texts in one request; at most {self.limits.max_texts}")
        for number, text in enumerate(texts, 1):
            if not isinstance(text, str):
                raise BadRequest(f"text {number} is a {type(text).__name__}, not a string")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"text {number} is not valid Unicode (a lone surrogate)") from None
        chars = sum(map(len, texts))
        if chars > self.limits.max_chars:
            raise BadRequest(f"{chars:,} characters in one request; at most {self.limits.max_chars:,}")
        return texts

    async def translate(self, texts: list[str], decode: DecodeConfig, nbest: int) -> Translated:
        """Each text split into sentences, all of them decoded in the batcher, and each text's n-best put
        back together (its k-th: each sentence's k-th hypothesis, or its last; the scores summed). An
        overloaded server refuses before any tokenizing; the sentences are tokenized once, here, and the
        batcher's job carries their ids."""
        paragraphs = [Paragraph.of(text) for text in texts]
        found, lengths, _ = await self._decoded([s for paragraph in paragraphs for s in paragraph.sentences],
                                                decode, nbest)
        translations, start = [], 0
        for paragraph in paragraphs:
            mine = found[start : start + len(paragraph.sentences)]
            start += len(paragraph.sentences)
            count = max((len(hyps) for hyps in mine), default=1)
            picks = [[hyps[min(k, len(hyps) - 1)] for hyps in mine] for k in range(count)]
            translations.append([Translation(paragraph.join([t.text for t in pick]), sum(t.score for t in pick))
                                 for pick in picks])
        return Translated(translations, self._cut_notes([len(p.sentences) for p in paragraphs], lengths))

    def _cut_notes(self, counts: list[int], lengths: list[int]) -> list[str]:
        """`counts`: each text's sentences (or HTML units); `lengths`: the source tokens of every one of
        them, text after text."""
        most, notes, start = token_budget(self.translator.max_positions), [], 0
        for number, count in enumerate(counts, 1):
            mine = lengths[start : start + count]
            start += len(mine)
            for index, length in enumerate(mine, 1):
                if length > most:
                    where = f"text {number}" + (f", sentence {index}," if len(mine) > 1 else "")
                    notes.append(f"{where} has {length} tokens: cut to the model's {most}")
        return notes

    async def read_html(self, texts: list[str]) -> list[Page]:
        """The texts read as HTML, off the event loop; an overloaded server refuses before reading."""
        self._refusing(self.batcher.check_room, 1)
        return await asyncio.to_thread(_read_pages, texts)

    async def translate_html(self, read: list[Page], decode: DecodeConfig, nbest: int) -> Translated:
        """Each page's n-best (its k-th: every unit's k-th hypothesis, or its last), its markup kept."""
        units = [unit for page in read for unit in page.units]
        found, lengths, spans = await self._decoded([unit.text for unit in units], decode, nbest,
                                                    align=[bool(unit.pieces) for unit in units])
        count = max((len(hyps) for hyps in found), default=1)
        rendered = await asyncio.to_thread(_render_pages, read, found, spans, count)
        return Translated(rendered, self._cut_notes([len(page.units) for page in read], lengths))

    async def _decoded(self, sentences: list[str], decode: DecodeConfig, nbest: int,
                       align: list[bool] | None = None
                       ) -> tuple[list[list[Translation]], list[int], list[list[tuple[int, int]]]]:
        """Each sentence's n-best from the batcher, its source tokens before any cut, and (with `align`:
        where align[i], sentence i's hypotheses aligned to it; a sentence with no inline tag to place
        needs none) the characters of each source token."""
        if not sentences:
            return [], [], []
        self._refusing(self.batcher.check_room, len(sentences))
        if align is not None:
            tokens, spans = zip(*self.translator.tokenizers.src.encode_with_offsets(sentences))
        else:
            tokens, spans = self.translator.tokenizers.src.encode_batch(sentences), []
        sources = [source_ids(ids, self.translator.max_positions) for ids in tokens]
        job = Job(sources, decode, nbest, time.monotonic() + self.limits.timeout_s, align)
        future = self._refusing(self.batcher.submit, job)
        try:
            return (await asyncio.wait_for(asyncio.wrap_future(future), self.limits.timeout_s),
                    [len(ids) for ids in tokens], list(spans))
        except (asyncio.TimeoutError, DeadlinePassed):
            raise BadRequest(f"not translated within {self.limits.timeout_s:g} s: the server is overloaded",
                             503) from None
        except UserError as err:
            raise BadRequest(str(err)) from None

    @staticmethod
    def _refusing(call, argument):
        """`call(argument)`, a full queue answered 429 and a stopping batcher 503."""
        try:
            return call(argument)
        except QueueFull as err:
            raise BadRequest(f"too many requests: {err}", 429, {"Retry-After": "1"}) from None
        except WorkerStopped as err:
            raise BadRequest(str(err), 503) from None


def _read_pages(pages: list[str]) -> list[Page]:
    read = []
    for number, page in enumerate(pages, 1):
        try:
            read.append(Page(page))
        except BadHtml as err:
            raise BadRequest(f"text {number}: {err}" if len(pages) > 1 else str(err)) from None
    return read


def _render_pages(pages: list[Page], found: list[list[Translation]], spans: list,
                  count: int) -> list[list[Translation]]:
    """Per page, its k-th rendering for k < count (scored as its units' hypotheses summed)."""
    rendered, start = [], 0
    for page in pages:
        mine = range(start, start + len(page.units))
        start += len(page.units)
        texts = []
        for k in range(count):
            picks = [found[i][min(k, len(found[i]) - 1)] for i in mine]
            text = page.render([hyp.text for hyp in picks], [place(unit.pieces, hyp.text, hyp.alignment, spans[i])
                                                             for unit, hyp, i in zip(page.units, picks, mine)])
            texts.append(Translation(text, sum(hyp.score for hyp in picks)))
        rendered.append(texts)
    return rendered
