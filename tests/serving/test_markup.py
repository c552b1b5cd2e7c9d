"""HTML in, HTML out, without a model: each unit "translated" by a known function, its inline tags placed
by a known alignment, and the result checked against an independent parser's view of the input (html5lib:
the same tags, attributes, order and nesting) and against the text path's sentences."""
import pytest

from tests.helpers.serving import skeleton
from transformer_mt.benchmark.html_pages import MALFORMED, PAGES
from transformer_mt.decoding.translator import Alignment
from transformer_mt.serving.markup import BadHtml, Page
from transformer_mt.serving.paragraphs import Paragraph
from transformer_mt.serving.placement import Piece, place


def translate(page: Page, change=str.upper) -> str:
    """Each unit through `change` (which must keep lengths, so that a tag's own words are found)."""
    units = page.units
    outputs = [change(unit.text) for unit in units]
    return page.render(outputs, [place(unit.pieces, text, None, []) for unit, text in zip(units, outputs)])


@pytest.mark.parametrize("name", list(PAGES))
def test_every_tag_attribute_and_comment_comes_back_in_order_and_nesting(name):
    source = PAGES[name]
    if name == "unclosed":  # compared with the markup as lxml repaired it
        page = Page(source)
        source = page.render([u.text for u in page.units], [place(u.pieces, u.text, None, []) for u in page.units])
    assert skeleton(translate(Page(source))) == skeleton(source)


def test_nothing_changed_gives_the_page_back_as_lxml_writes_it():
    for name, source in PAGES.items():
        page = Page(source)
        same = page.render([unit.text for unit in page.units],
                           [place(unit.pieces, unit.text, None, []) for unit in page.units])
        if name not in ("whitespace", "entities", "line breaks", "article", "unclosed"):
            assert same == source, name


def test_text_is_translated_and_untranslated_elements_pass_through():
    out = translate(Page(PAGES["code"] + PAGES["translate no"] + PAGES["script and style"]))
    assert "<code>make test</code>" in out and "<kbd>Enter</kbd>" in out and "return 1 &lt; 2" in out
    assert '<span translate="no">FastBuild Pro</span>' in out and '<span class="brand notranslate">Acme</span>' in out
    assert "<style>p { color: red; }</style>" in out and "<script>var a = 1 < 2;</script>" in out
    assert "RUN " in out and " BEFORE YOU COMMIT." in out and "OUR PRODUCT " in out and "HELLO THERE." in out


def test_entities_stay_escaped_and_line_breaks_stay_between_their_lines():
    out = translate(Page(PAGES["entities"]))
    assert "5 &lt; 6 &amp; 7 &gt; 3" in out
    assert translate(Page(PAGES["line breaks"])) == "<p>ROSES ARE RED.<br>VIOLETS ARE BLUE.<br>SUGAR IS SWEET.</p>"


def test_units_are_the_sentences_the_text_path_reads():
    page = Page("<p>Mr. Smith is here. He <b>waits</b> for you.</p><ul><li>One item</li></ul><p>12</p>")
    assert [u.text for u in page.units] == Paragraph.of("Mr. Smith is here. He waits for you.").sentences + ["One item"]


def test_a_tag_across_two_sentences_makes_them_one_unit():
    page = Page("<p>First <b>one. Second</b> two.</p>")
    assert [u.text for u in page.units] == ["First one. Second two."]
    page = Page("<p><b>First one. Second two.</b> Third.</p>")
    assert [u.text for u in page.units] == ["First one.", "Second two.", "Third."]


def test_a_document_keeps_its_doctype_head_and_body():
    out = translate(Page("<!DOCTYPE html><html><head><title>My page</title></head>"
                         "<body><p>Hi there.</p></body></html>"))
    assert out.startswith("<!DOCTYPE html>") and "<title>MY PAGE</title>" in out and "<p>HI THERE.</p>" in out


def test_rendering_twice_gives_each_its_own_translations():
    page = Page(PAGES["nested inline"])
    first = page.render(["A b c d e f."], [[(0, 5), (2, 3), (6, 7)]])
    second = page.render(["X y z."], [[(0, 5), (2, 3), (6, 7)]])
    assert first == '<p><b>A <i>b</i> c</b> <span class="x" data-n="1">d</span> e f.</p>'
    assert second == '<p><b>X <i>y</i> z</b>.<span class="x" data-n="1"></span></p>'


@pytest.mark.parametrize("body", MALFORMED + ["", "   ", "<p></p>", "<br>", "<!-- only a comment -->"])
def test_malformed_html_is_repaired_or_refused_never_an_unexpected_error(body):
    try:
        page = Page(body)
    except BadHtml:
        return
    out = translate(page)
    assert isinstance(out, str)
    Page(out)  # what we return reads again


def test_markup_nested_past_the_limit_is_refused_in_words():
    with pytest.raises(BadHtml, match="nests elements 301 deep; at most 200"):
        Page("<div>" * 300 + "Too deep.")


def test_placement_follows_the_alignment_and_keeps_siblings_apart():
    # "I like the red house." → "J'aime la maison rouge.": red ↔ rouge, house ↔ maison
    source = "I like the red house."
    translation = "J'aime la maison rouge."
    spans = [(0, 1), (1, 6), (6, 10), (10, 14), (14, 20), (20, 21), (21, 21)]
    target = [(0, 1), (1, 2), (2, 6), (6, 9), (9, 16), (16, 22), (22, 23)]
    alignment = Alignment(target, [0, 1, 1, 2, 4, 3, 5])
    red = Piece("red", (11, 14), 11 / 21, 14 / 21, False)
    house = Piece("house", (15, 20), 15 / 21, 20 / 21, False)
    assert place([red, house], translation, alignment, spans) == [(17, 22), (10, 16)]
    assert source[11:14] == "red" and translation[17:22] == "rouge" and translation[10:16] == "maison"
    code = Piece("make test", (4, 13), 0.2, 0.6, True)
    assert place([code], "Lancez make test maintenant.", None, []) == [(7, 16)]
