"""`format: html` through the real server: the markup of every page of the battery comes back as it went
in (html5lib's view of both), a paragraph of one sentence is that sentence's text translation, and a few
hundred random and broken bodies get no server error."""
import html

import httpx

from tests.helpers.serving import as_html, post, single, skeleton
from transformer_mt.benchmark.html_pages import PAGES, random_markup
from transformer_mt.serving.markup import Page
from transformer_mt.serving.placement import place


def test_every_page_of_the_battery_keeps_its_markup(server):
    names = list(PAGES)
    answer = post(server, json={"q": [PAGES[n] for n in names], "source": "en", "target": "fr", "format": "html"})
    assert answer.status_code == 200, answer.text
    for name, translated in zip(names, answer.json()["translatedText"]):
        source = PAGES[name]
        if name == "unclosed":  # as lxml repaired it
            page = Page(source)
            source = page.render([u.text for u in page.units], [place(u.pieces, u.text, None, []) for u in page.units])
        assert skeleton(translated) == skeleton(source), name


def test_a_paragraph_of_one_sentence_is_its_text_translation_and_alternatives_follow(server, sample_pairs):
    sentences = single(sample_pairs, 400, 6)
    pages = [f"<p>{html.escape(s, quote=False)}</p>" for s in sentences]
    as_markup = post(server, json={"q": pages, "source": "en", "target": "fr", "format": "html", "alternatives": 1})
    as_text = post(server, json={"q": sentences, "source": "en", "target": "fr", "alternatives": 1})
    for page, text in zip(as_markup.json()["translatedText"], as_text.json()["translatedText"]):
        assert page == "<p>" + as_html(text) + "</p>"
    for pages_, texts in zip(as_markup.json()["alternatives"], as_text.json()["alternatives"]):
        assert pages_ == ["<p>" + as_html(t) + "</p>" for t in texts]


def test_random_and_broken_html_gets_no_server_error(server):
    with httpx.Client(timeout=60) as client:
        for body in random_markup(300, seed=1):
            answer = client.post(f"{server.url}/translate", json={"q": body, "source": "en", "target": "fr",
                                                                   "format": "html"})
            assert answer.status_code < 500, (body, answer.text)
            assert "translatedText" in answer.json() or "error" in answer.json()
    assert httpx.get(f"{server.url}/ready").status_code == 200

