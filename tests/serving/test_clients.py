"""The LibreTranslate clients self-hosters point at a server, each replayed as its own source code builds
its requests (method, content type, fields, form or JSON, list or string) and reads the answers; the
source each follows is named in its test. The reference is the same model translating in this process."""
import html
import json
import urllib.parse

import httpx

from tests.helpers.serving import as_html, post, single


def paragraph(ours, sentence: str) -> str:
    """What <p>sentence</p> must come back as: the sentence's text translation in its <p>."""
    return f"<p>{as_html(ours.translate([sentence])[0][0].text)}</p>"


def test_mastodon(server, ours, sample_pairs):
    """app/lib/translation_service/libre_translate.rb (4.2+): GET /languages for the targets of each
    code; JSON {q: [texts], source: the post's language or "auto", target, format: "html", api_key}; reads
    translatedText[i] and, without a source, detectedLanguage[i].language."""
    languages = {entry["code"]: [t for t in entry["targets"] if t != entry["code"]]
                 for entry in httpx.get(f"{server.url}/languages").json()}
    assert languages["en"] == ["fr"]
    sentences = single(sample_pairs, 300, 2)
    texts = [f"<p>{html.escape(s, quote=False)}</p>" for s in sentences]
    for source in ("en", ""):
        answer = post(server, json={"q": texts, "source": source or "auto", "target": "fr", "format": "html",
                                    "api_key": None})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        for index, sentence in enumerate(sentences):
            assert body["translatedText"][index] == paragraph(ours, sentence)
            assert (source or body["detectedLanguage"][index]["language"]) == "en"


def test_akkoma(server, ours, sample_pairs):
    """lib/pleroma/akkoma/translators/libre_translate.ex: JSON {q: string, source: "auto" when the post has
    no language, target, format: "html", api_key: null}; matches %{"translatedText" => t} and reads
    detectedLanguage.language when present."""
    sentence = single(sample_pairs, 310, 1)[0]
    body = post(server, json={"q": f"<p>{html.escape(sentence, quote=False)}</p>", "source": "auto",
                              "target": "fr", "format": "html", "api_key": None}).json()
    assert body["translatedText"] == paragraph(ours, sentence)
    assert body["detectedLanguage"]["language"] == "en" and 0 < body["detectedLanguage"]["confidence"] <= 100


def test_discourse(server, ours, sample_pairs):
    """discourse-translator services/discourse_translator/libretranslate.rb: form POST /detect with the
    post's text (tags stripped) and api_key (nil: a bare key); res[0]["language"]; GET /languages to check
    the pair; form POST /translate with the cooked HTML, source, target, format=html."""
    sentence = single(sample_pairs, 320, 1)[0]
    cooked = f"<p>{html.escape(sentence, quote=False)}</p>"
    detect = post(server, "/detect", content=urllib.parse.urlencode({"q": sentence}) + "&api_key",
                  headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    detected = detect[0]["language"]
    assert detected == "en"
    codes = [entry["code"] for entry in httpx.get(f"{server.url}/languages").json()]
    assert detected in codes and "fr" in codes
    form = urllib.parse.urlencode({"q": cooked, "source": detected, "target": "fr", "format": "html"}) + "&api_key"
    answer = post(server, content=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.json()["translatedText"] == paragraph(ours, sentence)


def test_crow_translate_and_digikam(server, ours, sample_pairs):
    """QOnlineTranslator (Crow Translate, digiKam): always POST /detect first ("&q=…&api_key="), reads
    [0].language; then "&q=…&source=…&target=…&api_key=" to /translate, reads translatedText."""
    sentence = single(sample_pairs, 330, 1)[0]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    quoted = urllib.parse.quote(sentence, safe="")
    detect = post(server, "/detect", content=f"&q={quoted}&api_key=", headers=headers).json()
    assert detect[0]["language"] == "en"
    answer = post(server, content=f"&q={quoted}&source=en&target=fr&api_key=", headers=headers).json()
    assert answer["translatedText"] == ours.translate([sentence])[0][0].text


def test_twp_translate_web_pages(server, ours, sample_pairs):
    """TWP src/background/translationService.js (createLibreService): URLSearchParams q, source, target,
    format=text, api_key; reads translatedText and detectedLanguage.language unconditionally."""
    sentence = single(sample_pairs, 340, 1)[0]
    form = urllib.parse.urlencode({"q": sentence, "source": "auto", "target": "fr", "format": "text", "api_key": ""})
    body = post(server, content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert body["translatedText"] == ours.translate([sentence])[0][0].text
    assert body["detectedLanguage"]["language"] == "en"


def test_wagtail_localize(server, ours, sample_pairs):
    """wagtail_localize/machine_translators/libretranslate.py: JSON (data=json.dumps) {q: [strings], source,
    target, api_key, format: "html"}; zips translatedText with the strings."""
    sentences = single(sample_pairs, 350, 3)
    strings = [html.escape(s, quote=False) for s in sentences[:2]] + [f"<b>{html.escape(sentences[2])}</b>"]
    answer = post(server, content=json.dumps({"q": strings, "source": "en", "target": "fr", "api_key": "",
                                              "format": "html"}), headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    translated = answer.json()["translatedText"]
    assert translated[:2] == [as_html(ours.translate([s])[0][0].text) for s in sentences[:2]]
    assert translated[2] == f"<b>{as_html(ours.translate([sentences[2]])[0][0].text)}</b>"


def test_nextcloud_php_client(server, ours, sample_pairs):
    """jefs42/libretranslate src/LibreTranslate.php (Nextcloud's integration_libretranslate): POST / to
    test the connection, GET /frontend/settings and /languages, POST /detect?q=…&api_key= with no body,
    then a multipart POST /translate {q, format: "html", source, target, api_key}."""
    httpx.post(f"{server.url}/", timeout=60)  # its answer is not read
    assert "charLimit" in httpx.get(f"{server.url}/frontend/settings").json()
    assert {entry["code"]: entry["name"] for entry in httpx.get(f"{server.url}/languages").json()} == \
        {"en": "English", "fr": "French"}
    sentence = single(sample_pairs, 360, 1)[0]
    detect = post(server, "/detect?" + urllib.parse.urlencode({"q": sentence, "api_key": ""})).json()
    assert detect[0]["language"] == "en"
    fields = {"q": sentence, "format": "html", "source": "en", "target": "fr", "api_key": ""}
    answer = post(server, files={key: (None, value) for key, value in fields.items()})
    assert answer.status_code == 200, answer.text
    assert answer.json()["translatedText"] == as_html(ours.translate([sentence])[0][0].text)


def test_weblate(server, ours, sample_pairs):
    """weblate/machinery/libretranslate.py: GET /languages codes; JSON {api_key, q: [texts], source,
    target}; translatedText[index]."""
    assert [entry["code"] for entry in httpx.get(f"{server.url}/languages").json()] == ["en", "fr"]
    texts = single(sample_pairs, 370, 3)
    body = post(server, json={"api_key": None, "q": texts, "source": "en", "target": "fr"}).json()
    assert body["translatedText"] == [t[0].text for t in ours.translate(texts)]


def test_searxng(server, ours, sample_pairs):
    """searx/engines/libretranslate.py: JSON {q, source, target, alternatives: 3}; translatedText and
    alternatives."""
    from dataclasses import replace

    sentence = single(sample_pairs, 380, 1)[0]
    body = post(server, json={"q": sentence, "source": "en", "target": "fr", "alternatives": 3}).json()
    best = ours.translate([sentence], replace(ours.decode, beam_size=max(ours.decode.beam_size, 4)), nbest=4)[0]
    assert body["translatedText"] == best[0].text and body["alternatives"] == [t.text for t in best[1:]]


def test_libretranslatepy(server, ours, sample_pairs):
    """libretranslatepy: urlencoded translate, detect and languages."""
    from libretranslatepy import LibreTranslateAPI

    client = LibreTranslateAPI(f"{server.url}/")
    sentence = single(sample_pairs, 390, 1)[0]
    assert client.translate(sentence, "en", "fr") == ours.translate([sentence])[0][0].text
    assert client.detect(sentence)[0]["language"] == "en"
    assert [entry["code"] for entry in client.languages()] == ["en", "fr"]
