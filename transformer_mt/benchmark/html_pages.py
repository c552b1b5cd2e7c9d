"""HTML as LibreTranslate's clients send it: a battery of fragments (what Mastodon, Discourse and
wagtail send: paragraphs, lists, tables, links, code, comments, entities, sloppy markup), and test
sentences dressed as paragraphs with inline tags, for the HTML cost benchmark."""
from __future__ import annotations

import html
import random

PAGES = {
    "paragraph": "<p>The weather is nice today.</p>",
    "nested inline": "<p>I <b>really <i>like</i> this</b> <span class=\"x\" data-n=\"1\">old</span> house.</p>",
    "link": "<p>Read <a href=\"https://example.org/a?b=1&amp;c=2\" rel=\"nofollow noopener\">the report</a> "
            "before Monday.</p>",
    "mastodon post": "<p>Good morning <span class=\"h-card\"><a href=\"https://social.example/@ann\" "
                     "class=\"u-url mention\">@<span>ann</span></a></span>! The train is late again. "
                     "<a href=\"https://social.example/tags/travel\" class=\"mention hashtag\" rel=\"tag\">"
                     "#<span>travel</span></a></p>",
    "line breaks": "<p>Roses are red.<br>Violets are blue.<br/>Sugar is sweet.</p>",
    "list": "<ul><li>Buy some bread.</li><li>Call <em>your</em> mother.</li><li>Water the plants.</li></ul>",
    "table": "<table><thead><tr><th>Name</th><th>Age</th></tr></thead><tbody><tr><td>My brother is tall."
             "</td><td>12</td></tr></tbody></table>",
    "headings": "<h1>A new beginning</h1><h2>The first day</h2><p>She opened the door.</p>",
    "comment": "<p>This is important.<!-- reviewed by Tom --> Please read it.</p>",
    "entities": "<p>Use 5 &lt; 6 &amp; 7 &gt; 3 in the test. Caf&eacute; &quot;Le Monde&quot; is&nbsp;open.</p>",
    "translate no": "<p>Our product <span translate=\"no\">FastBuild Pro</span> is ready. "
                    "<span class=\"brand notranslate\">Acme</span> thanks you.</p>",
    "code": "<p>Run <code>make test</code> before you commit.</p><pre>def f():\n    return 1 &lt; 2\n</pre>"
            "<p>Then press <kbd>Enter</kbd>.</p>",
    "script and style": "<style>p { color: red; }</style><p>Hello there.</p><script>var a = 1 < 2;</script>",
    "unclosed": "<p>First paragraph.<p>Second <b>bold paragraph.<li>An item",
    "attributes": "<div id=\"main\" class=\"a b\" data-x='y \"z\"' hidden><p title=\"A title\" lang=\"en\">"
                  "I am hungry.</p><img src=\"cat.png\" alt=\"A black cat\"></div>",
    "blockquote": "<blockquote><p>Life is short.</p>— <cite>Someone</cite></blockquote>",
    "text only": "Just some text without markup. And a second sentence.",
    "whitespace": "<div>\n  <p>\n    Where is the station?\n  </p>\n  <p>It is  near the   bank.</p>\n</div>",
    "article": "<article><header><h1>Life in the city</h1><p class=\"meta\">By <a href=\"/ann\">Ann</a>"
               "</p></header><section><h2>Morning</h2><p>I wake up at six o'clock. I drink a cup of "
               "<strong>black</strong> coffee and read the news.</p><p>Then I take the bus to work. The bus "
               "is often <em>very</em> crowded.</p></section><section><h2>Evening</h2><ul><li>I cook dinner."
               "</li><li>I call my friends.</li><li>I go to bed early.</li></ul><p>Is it a good life? "
               "<a href=\"#more\">Tell me what you think</a>.</p></section><footer><p>&copy; 2026 "
               "<abbr title=\"Example Corp\">EC</abbr>.</p></footer></article>",
}

MALFORMED = [
    "<p>unclosed <b>bold", "</p>stray closing", "<p <b>broken</p>", "<<<>>>", "<p>a</b></i></p>",
    "<table><p>misplaced</p><tr><td>x</table>", "<a href='x>link</a>", "<!-- unterminated comment",
    "<![CDATA[x]]>", "<p>\x00null</p>", "&#xZZZ; &bogus; &#99999999;", "<script>unterminated", "<" * 50,
    "<p>" * 300 + "deep" + "</p>" * 3, "<div>" * 300 + "Too deep.", "<b><i>" * 150 + "Too deep.",
    "<svg><foreignObject><p>x</p></svg>", "<!DOCTYPE html><html><body>Hi.",
]

_PIECES = ["<p>", "</p>", "<b>", "</b>", "<a href='x'>", "</a>", "<br>", "<li>", "<table>", "<td>", "</div>",
           "<!--", "-->", "&amp;", "&#", "&nbsp", "<", ">", "\"", "'", "=", "Hello", " world.", "\n", "<script>",
           "</script>", "<pre>", "<span translate=no>", "é", "\x00", "<![CDATA[", "]]>", "</", "<code>", "I am here. ",
           "<img src=x>"]
_INLINE = ("b", "i", "em", "strong", "span", "u")


def random_markup(count: int, seed: int = 0) -> list[str]:
    """`count` random bodies of tag pieces, text, entities and stray brackets, then MALFORMED."""
    rng = random.Random(seed)
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 40))) for _ in range(count)] + MALFORMED


def tagged_paragraphs(sentences: list[str], seed: int = 0) -> list[str]:
    """Each sentence as `<p>…</p>` with one word (not the first or last two) in an inline tag and,
    every other sentence, a link round its last two words: what an HTML request of the same sentences
    holds."""
    rng, pages = random.Random(seed), []
    for number, sentence in enumerate(sentences):
        words = [html.escape(word, quote=False) for word in sentence.split(" ")]
        if len(words) >= 4:
            k = rng.randrange(1, len(words) - 2)
            tag = rng.choice(_INLINE)
            words[k] = f"<{tag}>{words[k]}</{tag}>"
            if number % 2:
                words[-2] = f"<a href=\"https://example.org/{number}\">{words[-2]}"
                words[-1] = f"{words[-1]}</a>"
        pages.append("<p>" + " ".join(words) + "</p>")
    return pages
