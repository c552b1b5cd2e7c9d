"""The HTTP service, tested as a client meets it: the real server (scripts/serve.py) as a subprocess
on a free loopback port with a tiny model, and real HTTP clients."""
import html
import json
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers.serving import Server, as_html, post, single, skeleton
from transformer_mt.benchmark.html_pages import PAGES
from transformer_mt.run_folder import open_run

ROOT = Path(__file__).resolve().parents[2]


def test_the_libretranslate_client_translates_and_lists_languages(server, ours, sample_pairs):
    from libretranslatepy import LibreTranslateAPI

    client = LibreTranslateAPI(f"{server.url}/")
    sentence = single(sample_pairs, 600, 1)[0]
    assert client.translate(sentence, "en", "fr") == ours.translate([sentence])[0][0].text
    assert client.languages() == [{"code": "en", "name": "English", "targets": ["fr"]},
                                  {"code": "fr", "name": "French", "targets": []}]
    texts = single(sample_pairs, 601, 3)
    answer = post(server, json={"q": texts, "source": "auto", "target": "fr", "alternatives": 2}).json()
    best = ours.translate(texts, nbest=3)
    assert answer["translatedText"] == [nbest[0].text for nbest in best]
    assert answer["alternatives"] == [[t.text for t in nbest[1:]] for nbest in best]
    assert httpx.get(f"{server.url}/frontend/settings").json()["charLimit"] == 5000


def test_concurrent_requests_each_get_their_own_translations_decoded_in_shared_batches(server, ours, sample_pairs):
    sentences = single(sample_pairs, 700, 50)
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda s: post(server, json={"q": s, "source": "en", "target": "fr"}), sentences))
    assert [a.status_code for a in answers] == [200] * 50
    assert [a.json()["translatedText"] for a in answers] == [t[0].text for t in ours.translate(sentences)]
    metrics = httpx.get(f"{server.url}/metrics").text
    alone = float(_metric(metrics, 'mt_batch_sentences_bucket{le="1.0"}'))
    assert float(_metric(metrics, "mt_batch_sentences_count")) > alone  # some batch held more than one


def test_a_text_of_several_sentences_and_lines_comes_back_sentence_by_sentence_with_its_layout(server, ours):
    text = "I am hungry. Where is the station?\n\n  The cat sleeps.\r\nTom is here!  He laughs. "
    sentences = ["I am hungry.", "Where is the station?", "The cat sleeps.", "Tom is here!", "He laughs."]
    t = [nbest[0].text for nbest in ours.translate(sentences)]
    want = f"{t[0]} {t[1]}\n\n  {t[2]}\r\n{t[3]}  {t[4]} "
    assert post(server, json={"q": text}).json() == {"translatedText": want}
    native = post(server, "/v1/translate", json={"text": [text, "\n"]}).json()["translations"]
    assert [nbest[0]["text"] for nbest in native] == [want, "\n"]


def _metric(text: str, name: str) -> str:
    return next(line.split()[-1] for line in text.splitlines() if line.startswith(name))


def test_the_native_endpoint_searches_as_asked_and_documents_itself(server, ours, sample_pairs):
    from dataclasses import replace

    texts = single(sample_pairs, 800, 3) + [" ".join(["word"] * 80)]
    answer = post(server, "/v1/translate", json={"text": texts, "beam_size": 3, "nbest": 2, "max_len_b": 5})
    assert answer.status_code == 200, answer.text
    want = ours.translate(texts, replace(ours.decode, beam_size=3, max_len_b=5), nbest=2)
    got = answer.json()["translations"]
    assert [[h["text"] for h in nbest] for nbest in got] == [[t.text for t in nbest] for nbest in want]
    scores = [h["score"] for nbest in got for h in nbest]
    assert scores == pytest.approx([t.score for nbest in want for t in nbest], abs=1e-4)
    tokens = len(ours.tokenizers.src.encode(texts[-1]))
    assert answer.json()["notes"] == [f"text 4 has {tokens} tokens: cut to the model's {ours.max_positions - 1}"]
    assert "/v1/translate" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


BAD = [
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    ({"content": b"q=x", "headers": {"Content-Type": "text/plain"}}, 400, "unsupported content type"),
    ({"json": {"source": "en", "target": "fr"}}, 400, "missing q"),
    ({"json": {"q": {"a": 1}}}, 400, "q must be a string or a list"),
    ({"json": {"q": ["ok", 3]}}, 400, "text 2 is a int"),
    ({"json": {"q": "x" * 5001}}, 400, "at most 5,000"),
    ({"json": {"q": ["x"] * 129}}, 400, "at most 128"),
    ({"content": b'{"q": "' + b"x" * (1 << 20) + b'"}', "headers": {"Content-Type": "application/json"}}, 413, "bytes"),
    ({"content": b'{"q": "\xff\xfe"}', "headers": {"Content-Type": "application/json"}}, 400, "not UTF-8"),
    ({"content": b'{"q": "\\ud800"}', "headers": {"Content-Type": "application/json"}}, 400, "not valid Unicode"),
    ({"json": {"q": "Hi.", "source": "de"}}, 400, "not an available source language"),
    ({"json": {"q": "Hi.", "target": "es"}}, 400, "not an available target language"),
    ({"json": {"q": "Hi.", "format": "xml"}}, 400, "format 'xml' is not supported: send text or html"),
    ({"json": {"q": "Bonjour tout le monde, comment allez-vous ?", "source": "auto"}}, 400,
     "French (fr) is not available as a target language from French (fr)"),
    ({"json": {"q": "Hi.", "alternatives": -1}}, 400, "alternatives must be a whole number from 0 to 4"),
    ({"json": {"q": "Hi.", "alternatives": "many"}}, 400, "alternatives must be"),
    ({"json": {"q": "Hi.", "alternatives": 1.5}}, 400, "alternatives must be"),
    ({"json": []}, 400, "must be an object"),
    ({"content": b"--x\r\nnot a form", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 400,
     "multipart form could not be read"),
]


@pytest.mark.parametrize("request_, status, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_is_a_json_error_with_its_status_and_the_server_stays_healthy(server, request_, status, message):
    answer = post(server, **request_)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    assert httpx.get(f"{server.url}/ready").status_code == 200


def test_an_empty_text_is_an_empty_translation_and_native_mistakes_are_400(server):
    assert post(server, json={"q": "", "source": "en", "target": "fr"}).json() == {"translatedText": ""}
    for body, message in (({"text": "Hi.", "nbest": 5, "beam_size": 2}, "nbest (5) cannot exceed beam_size (2)"),
                          ({"text": "Hi.", "beam_size": 0}, "beam_size"), ({"txt": "Hi."}, "text"),
                          ({"text": "Hi.", "beam_size": 99}, "at most 16")):
        answer = post(server, "/v1/translate", json=body)
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert post(server, "/detect", data={"q": ""}).json() == {"error": "Invalid request: missing q parameter"}
    assert post(server, "/detect", data={"q": "1234"}).json() == [{"confidence": 0.0, "language": "en"}]


def test_a_few_hundred_random_bodies_get_no_server_error(server):
    rng = random.Random(0)
    fields = ["q", "source", "target", "format", "alternatives", "api_key", "text", "nbest"]
    values = ["", "Hi.", "en", "fr", "auto", 0, -1, 3, 1e308, None, [], ["a", None], {"q": 1}, "\u0000", True,
              "html", "<p>Hi <b>there</b>.</p>", ["<i>a</i>", "<p>b"]]
    with httpx.Client(timeout=60) as client:
        for number in range(300):
            body = {rng.choice(fields): rng.choice(values) for _ in range(rng.randint(0, 5))}
            path = rng.choice(["/translate", "/v1/translate", "/detect"])
            if number % 3:
                answer = client.post(f"{server.url}{path}", json=body)
            else:
                answer = client.post(f"{server.url}{path}", content=bytes(rng.randrange(256) for _ in range(40)),
                                     headers={"Content-Type": rng.choice(["application/json",
                                                                          "application/x-www-form-urlencoded"])})
            assert answer.status_code < 500, (body, answer.text)
            assert "error" in answer.json() or answer.status_code == 200
    assert httpx.get(f"{server.url}/ready").status_code == 200


def test_api_keys_are_required_when_a_file_names_them(run, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# our clients\nsecret-one\nsecret-two\n")
    server = Server(run, "--api-keys", str(keys))
    try:
        assert post(server, json={"q": "Hi."}).status_code == 403
        assert post(server, json={"q": "Hi.", "api_key": "nope"}).json() == {"error": "Invalid API key"}
        assert post(server, json={"q": "Hi.", "api_key": "secret-two"}).status_code == 200
        assert post(server, "/v1/translate", json={"text": "Hi."},
                    headers={"X-API-Key": "secret-one"}).status_code == 200
        assert httpx.get(f"{server.url}/frontend/settings").json()["keyRequired"] is True
    finally:
        server.stop()


def test_overload_is_answered_429_at_once_and_every_other_request_is_translated(run, sample_pairs):
    server = Server(run, "--queue-size", "4", "--max-wait-ms", "200")
    try:
        sentences = [s for s, _ in sample_pairs[900:960]]
        with ThreadPoolExecutor(60) as pool:
            answers = list(pool.map(lambda s: post(server, json={"q": s}), sentences))
        statuses = [a.status_code for a in answers]
        assert set(statuses) == {200, 429} and statuses.count(429) > 0
        assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 429)
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        server.stop()


def test_sigterm_answers_every_accepted_request_then_exits_0(run, sample_pairs):
    server = Server(run, "--max-wait-ms", "5000")
    sentences = single(sample_pairs, 1000, 16)  # one sentence a request: 16 queued = all 16 accepted
    with ThreadPoolExecutor(16) as pool:
        pending = [pool.submit(post, server, json={"q": s}) for s in sentences]
        deadline = time.monotonic() + 30
        while float(_metric(server.metrics(), "mt_queue_sentences")) < len(sentences):  # all accepted
            assert time.monotonic() < deadline, "the requests were not all queued within 30 s"
            time.sleep(0.02)
        code, output = server.stop()
        answers = [p.result() for p in pending]
    assert [a.status_code for a in answers] == [200] * 16
    assert code == 0, output
    assert "Finished server process" in output


def test_bad_flags_are_one_line_errors(run, tmp_path):
    for flags, message in ((["--queue-size", "0"], "--queue-size must be at least 1"),
                           (["--api-keys", str(tmp_path / "missing")], "cannot read --api-keys"),
                           (["--port", "70000"], "--port must be from 0 to 65535")):
        result = subprocess.run([sys.executable, "scripts/serve.py", "--run", str(run), *flags], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_a_ctranslate2_export_is_served_as_it_translates(run, tmp_path, sample_pairs):
    from transformer_mt.decoding.ctranslate2 import ExportedTranslator
    from transformer_mt.export.ctranslate2 import export_ctranslate2

    export_ctranslate2(open_run(run), None, tmp_path / "ct2", "int8")
    server = Server(None, "--model", str(tmp_path / "ct2"))
    try:
        sentences = single(sample_pairs, 1100, 8)
        # One request's texts are decoded as one batch, as translate() decodes them: the same numbers.
        # (Concurrent requests are batched as they arrive, and a barely trained model's near-ties can
        # then fall either way, so those are checked for being answered, not for their words.)
        answer = post(server, json={"q": sentences})
        assert answer.json()["translatedText"] == [
            t[0].text for t in ExportedTranslator(tmp_path / "ct2", "cpu", 1).translate(sentences)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda s: post(server, json={"q": s}), sentences))
        assert all(a.status_code == 200 and isinstance(a.json()["translatedText"], str) for a in answers)
        page = post(server, json={"q": PAGES["article"], "format": "html", "source": "auto"})  # aligned by CTranslate2
        assert page.status_code == 200 and skeleton(page.json()["translatedText"]) == skeleton(PAGES["article"])
        maps = Path(f"/proc/{server.process.pid}/maps")
        if maps.exists():  # Linux: an export is served without PyTorch's libraries ever loading
            assert "libtorch" not in maps.read_text()
    finally:
        server.stop()


def test_json_error_for_unknown_routes(server):
    answer = httpx.get(f"{server.url}/nothing-here")
    assert answer.status_code == 404 and json.loads(answer.text) == {"error": "Not Found"}


def _browser():
    """Headless Chromium from the Debian packages (chromium, chromium-driver; .ci/run installs them)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_web_page_translates_in_a_real_browser(server, ours, sample_pairs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sentence = single(sample_pairs, 1200, 1)[0]
    browser = _browser()
    try:
        browser.get(f"{server.url}/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: "/ 5,000 characters" in b.find_element(By.ID, "count").text)
        browser.find_element(By.ID, "source").send_keys(sentence)
        assert browser.find_element(By.ID, "count").text == f"{len(sentence)} / 5,000 characters"
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: b.find_element(By.ID, "target").text not in ("", "…"))
        assert browser.find_element(By.ID, "target").text == ours.translate([sentence])[0][0].text
        assert browser.find_element(By.ID, "error").text == ""
        browser.execute_script("const s = document.getElementById('source'); s.value = arguments[0]; "
                               "s.dispatchEvent(new Event('input'));", "x" * 5001)
        assert browser.find_element(By.ID, "count").text == "5,001 / 5,000 characters"
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: "at most 5,000" in b.find_element(By.ID, "error").text)
        # HTML: the markup comes back, shown as text (the page never renders what the server sends)
        browser.find_element(By.CSS_SELECTOR, "input[name=format][value=html]").click()
        browser.execute_script("const s = document.getElementById('source'); s.value = arguments[0]; "
                               "s.dispatchEvent(new Event('input'));", f"<p>{html.escape(sentence)}</p>")
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: b.find_element(By.ID, "target").text.startswith("<p>"))
        assert browser.find_element(By.ID, "target").text == f"<p>{as_html(ours.translate([sentence])[0][0].text)}</p>"
    finally:
        browser.quit()
