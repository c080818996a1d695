"""The translation server (`seq2seq-shared serve`): bad requests answered and survived,
dynamic batching that returns each request its own lines, the real model's answers equal
to offline `translate`, SIGTERM finishing what is in flight. Run against a real uvicorn
server on loopback; most tests use a stand-in engine, so they need no model."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

fastapi = pytest.importorskip("fastapi", reason="the serve extra: pip install -e '.[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx", reason="the test extra: pip install -e '.[test]'")

from seq2seq_shared.config import ServeLimits as Limits  # noqa: E402
from seq2seq_shared.serve.app import create_app  # noqa: E402
from seq2seq_shared.serve.engine import Options  # noqa: E402


class FakeEngine:
    """Translates a line by reversing it (beam_size > 1 adds a "+" per extra beam), after
    `delay` seconds per call; "boom" fails the call; "hold" waits for `release`. Records
    every call."""

    attention = False
    info = {"total": 7, "config": {"model": {"attention": "none"}}}

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls = delay, []
        self.release = threading.Event()

    def check(self, options: Options) -> None:
        if options.beam_size > 4:
            raise ValueError(f"beam_size {options.beam_size} is over this server's limit (4)")

    def translate(self, lines, options):
        self.calls.append((list(lines), options))
        time.sleep(self.delay)
        if "hold" in lines:
            self.release.wait(30)
        if "boom" in lines:
            raise RuntimeError("the decoder broke")
        return [{"text": line[::-1] + "+" * (options.beam_size - 1)} for line in lines]

    def describe(self):
        return {"attention": False}


class LiveServer:
    """A uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [listener]}, daemon=True
        )
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            time.sleep(0.01)
        assert self.server.started, "the server did not start"

    def post(self, body, **kwargs):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return httpx.post(
            self.url + "/v1/translate", content=body, timeout=60, headers=headers, **kwargs
        )

    def healthy(self) -> bool:
        response = httpx.get(self.url + "/health", timeout=10)
        return response.status_code == 200 and response.json()["status"] == "ok"

    def wait_pending(self, lines: int) -> None:
        """Until at least `lines` lines are in progress (timing-free ordering)."""
        for _ in range(1000):
            if httpx.get(self.url + "/health").json()["batching"]["pending_lines"] >= lines:
                return
            time.sleep(0.005)
        raise AssertionError(f"{lines} lines never showed as in progress")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def serve():
    servers = []

    def start(engine=None, **limits):
        server = LiveServer(create_app(engine or FakeEngine(), Limits(**limits)))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


BAD_REQUESTS = [  # (body, status, words the message must have)
    (b'{"text": ["a"', 400, "not valid JSON"),
    (b'{"text": ["\xff\xfe"]}', 400, "not UTF-8"),
    (b"[" * 3000, 400, "JSON"),  # (3.11, 3.12: nested too deeply; 3.13: not valid)
    (b'{"text": ["a"], "beam_size": 1' + b"0" * 4400 + b"}", 400, "JSON cannot be read"),
    (b"", 400, "not valid JSON"),
    (b'["a"]', 422, "not an object"),
    (b'{"text": "a line"}', 422, "text: Input should be a valid list"),
    (b'{"text": [1]}', 422, "text[0]: Input should be a valid string"),
    (b'{"lines": ["a"]}', 422, "text: Field required"),
    (b'{"text": ["a"], "beam": 2}', 422, "beam: Extra inputs are not permitted"),
    (b'{"text": ["a"], "beam_size": "2"}', 422, "beam_size: Input should be a valid integer"),
    (b'{"text": ["a"], "beam_size": 0}', 422, "beam_size: Input should be greater than"),
    (b'{"text": ["a"], "beam_size": 9}', 422, "over this server's limit"),
    (b'{"text": ["a"], "length_penalty": NaN, "beam_size": 2}', 422, "length_penalty"),
    (b'{"text": ["a"], "length_penalty": 1e300, "beam_size": 2}', 422, "length_penalty"),
    (b'{"text": ["a"], "scores": "yes"}', 422, "scores: Input should be a valid boolean"),
    (b'{"text": ["a\\u0007b"]}', 422, "text[0] has a control character, U+0007, at position 1"),
    (b'{"text": ["ok", "two\\nlines"]}', 422, "text[1] has a control character, U+000A"),
    (b'{"text": ["\\ud800"]}', 422, "text[0] has a lone surrogate"),
    (json.dumps({"text": ["a"] * 11}).encode(), 413, "11 lines is over this server's limit of 10"),
    (json.dumps({"text": ["x" * 60]}).encode(), 413, "60 characters is over"),
]


@pytest.mark.parametrize(
    "raw, status, words",
    BAD_REQUESTS,
    ids=[f"{status}-{words[:24]}" for _, status, words in BAD_REQUESTS],
)
def test_a_bad_request_gets_its_status_and_a_message_and_the_server_goes_on(
    serve, raw, status, words
):
    server = serve(max_lines=10, max_chars=50)
    response = server.post(raw)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["status"] == status and words in answer["error"], answer
    assert server.healthy()
    assert server.post({"text": ["ab", "", "c\td"]}).json()["translations"] == [
        {"text": "ba"},
        {"text": ""},
        {"text": "d\tc"},
    ]


def test_a_body_over_the_limit_is_refused_by_its_length_and_when_chunked(serve):
    server = serve(max_lines=10, max_chars=50)
    limit = Limits(max_lines=10, max_chars=50).max_body_bytes
    response = server.post(b" " * (limit + 1))
    assert response.status_code == 413 and f"limit of {limit} bytes" in response.json()["error"]

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    response = httpx.post(
        server.url + "/v1/translate",
        content=chunks(),
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert server.healthy()


def test_unknown_paths_methods_and_content_types_answer_in_the_same_json_shape(serve):
    server = serve()
    for kind in ("text/plain", None):  # what a browser may send cross-site without asking
        response = httpx.post(
            server.url + "/v1/translate",
            content=b'{"text": ["a"]}',
            headers={"Content-Type": kind} if kind else {},
        )
        assert response.status_code == 415, response.text
        assert "Content-Type must be application/json" in response.json()["error"]
    response = httpx.get(server.url + "/v1/nothing")
    assert response.status_code == 404 and response.json() == {"error": "Not Found", "status": 404}
    response = httpx.get(server.url + "/v1/translate")
    assert response.status_code == 405 and response.json()["status"] == 405


def test_clients_that_leave_mid_request_do_not_hurt_the_server(serve):
    engine = FakeEngine(delay=0.5)
    server = serve(engine)
    head = "POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    body = json.dumps({"text": ["leaving"]}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as client:  # mid-body
        client.sendall(f"{head}Content-Length: {len(body) + 50}\r\n\r\n".encode() + body[:5])
    with socket.create_connection(("127.0.0.1", server.port)) as client:  # mid-headers
        client.sendall(head.encode()[:30])
    assert server.healthy()
    assert server.post({"text": ["still here"]}).json()["translations"] == [{"text": "ereh llits"}]


def test_a_client_that_leaves_while_its_lines_wait_has_them_dropped(serve):
    engine = FakeEngine(delay=0.6)
    server = serve(engine, max_wait_ms=0)
    first = threading.Thread(target=server.post, args=({"text": ["busy"]},))
    first.start()  # decoding for 0.6 s
    server.wait_pending(1)
    body = json.dumps({"text": ["gone"]}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as client:  # queued, leaves
        client.sendall(
            b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        time.sleep(0.1)
    first.join(10)
    time.sleep(0.8)
    assert [lines for lines, _ in engine.calls] == [["busy"]]  # "gone" never decoded
    assert httpx.get(server.url + "/health").json()["batching"]["abandoned_lines"] == 1


def test_a_request_that_waits_too_long_gets_503_and_its_lines_are_dropped(serve):
    engine = FakeEngine(delay=1.0)
    server = serve(engine, request_timeout=0.3, max_batch_lines=2)
    started = time.perf_counter()
    response = server.post({"text": ["a", "b", "c", "d", "e", "f"]})  # 3 pieces of 2 lines
    assert response.status_code == 503 and "--request-timeout" in response.json()["error"]
    assert response.headers["retry-after"] == "5" and time.perf_counter() - started < 0.9
    time.sleep(1.2)  # the piece being decoded finishes; the two queued ones are never run
    assert [lines for lines, _ in engine.calls] == [["a", "b"]]
    stats = httpx.get(server.url + "/health").json()["batching"]
    assert stats["abandoned_lines"] == 4 and stats["pending_lines"] == 0


def test_a_failing_decode_answers_500_to_its_own_request_only(serve):
    engine = FakeEngine()
    server = serve(engine)
    answers = {}
    threads = [
        threading.Thread(target=lambda t=text: answers.update({t: server.post({"text": [t]})}))
        for text in ("hold", "boom", "fine")
    ]
    for count, thread in enumerate(threads, 1):  # "boom" and "fine" queue behind "hold"
        thread.start()
        server.wait_pending(count)
    engine.release.set()  # then go in one call, which fails; then each alone
    for thread in threads:
        thread.join(30)
    assert [lines for lines, _ in engine.calls] == [["hold"], ["boom", "fine"], ["boom"], ["fine"]]
    assert answers["boom"].status_code == 500
    assert "the decoder broke" in answers["boom"].json()["error"]
    assert answers["fine"].json()["translations"] == [{"text": "enif"}]
    assert server.post({"text": ["ok"]}).json()["translations"] == [{"text": "ko"}]


def test_a_full_queue_answers_503_at_once_and_health_tells_a_dead_decoder(serve):
    engine = FakeEngine(delay=0.5)
    server = serve(engine, max_pending_lines=3)
    first = threading.Thread(target=server.post, args=({"text": ["a", "b", "c"]},))
    first.start()
    server.wait_pending(3)
    started = time.perf_counter()
    response = server.post({"text": ["d"]})
    assert response.status_code == 503 and "--max-pending-lines 3" in response.json()["error"]
    assert time.perf_counter() - started < 0.4
    first.join(10)
    assert server.post({"text": ["d"]}).status_code == 200
    server.server.config.app.state.batcher.stop()  # (what a crashed decoding thread looks like)
    health = httpx.get(server.url + "/health")
    assert health.status_code == 503 and health.json()["status"] == "decoder stopped"


def test_concurrent_requests_share_batches_and_each_gets_exactly_its_own_lines(serve):
    engine = FakeEngine(delay=0.05)
    server = serve(engine, max_batch_lines=12, max_wait_ms=100)

    async def clients():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def one(i):
                lines = [f"r{i}-{j}" for j in range(i % 4)]
                beam = 1 + i % 2
                response = await client.post(
                    "/v1/translate", json={"text": lines, "beam_size": beam}
                )
                assert response.status_code == 200, response.text
                return lines, beam, response.json()["translations"]

            return await asyncio.gather(*(one(i) for i in range(24)))

    for lines, beam, translations in asyncio.run(clients()):
        assert [t["text"] for t in translations] == [
            line[::-1] + "+" * (beam - 1) for line in lines
        ]
    sizes = [len(lines) for lines, _ in engine.calls]
    assert sum(sizes) == sum(i % 4 for i in range(24)) and max(sizes) <= 12
    assert len(engine.calls) < 12, sizes  # merged: 18 requests with lines, fewer calls
    for lines, options in engine.calls:  # each call holds one setting's lines only
        assert all(line.startswith("r") for line in lines)
        assert {int(line[1:].split("-")[0]) % 2 for line in lines} == {options.beam_size - 1}


def test_a_long_request_is_cut_into_pieces_and_others_are_decoded_between_them(serve):
    engine = FakeEngine(delay=0.2)
    server = serve(engine, max_batch_lines=2, max_wait_ms=0)
    lines = [f"line {i}" for i in range(6)]
    answers = {}
    long = threading.Thread(target=lambda: answers.update(long=server.post({"text": lines})))
    long.start()
    server.wait_pending(6)  # the long request's first piece is decoding
    assert server.post({"text": ["short"]}).json()["translations"] == [{"text": "trohs"}]
    long.join(10)
    assert [t["text"] for t in answers["long"].json()["translations"]] == [
        line[::-1] for line in lines
    ]
    calls = [lines for lines, _ in engine.calls]
    assert max(map(len, calls)) <= 2
    assert calls.index(["short"]) < calls.index(["line 4", "line 5"])


def test_the_page_the_model_description_and_the_api_docs(serve):
    server = serve()
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and 'id="translate"' in page.text
    assert httpx.get(server.url + "/v1/model").json() == FakeEngine.info
    schema = httpx.get(server.url + "/openapi.json").json()
    body = schema["paths"]["/v1/translate"]["post"]["requestBody"]
    assert "text" in body["content"]["application/json"]["schema"]["properties"]
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200
    # Swagger UI's scripts and styles come from this server: the page works offline.
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs.text)
    assert len(assets) >= 2 and all(asset.startswith("/") for asset in assets), assets
    for asset in assets:
        response = httpx.get(server.url + asset)
        assert response.status_code == 200 and len(response.content) > 1000, asset


def test_a_stalled_body_is_cut_at_the_body_timeout_and_the_server_goes_on(serve):
    server = serve(body_timeout=1.0)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(
            b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"te'
        )  # 4 of the 100 bytes promised, then nothing
        answer = client.recv(65536).decode()
    assert time.monotonic() - started < 15
    status, _, rest = answer.partition("\r\n")
    assert " 408 " in status, answer
    assert json.loads(rest.split("\r\n\r\n", 1)[1])["status"] == 408
    assert server.healthy() and server.post({"text": ["a"]}).status_code == 200


# The real model.


def test_the_served_model_answers_as_offline_translate_does(trained, numbers_corpus, serve):
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.decoding.translator import Translator
    from seq2seq_shared.serve.engine import Engine

    engine = Engine(trained)
    server = serve(engine, max_batch_lines=16, max_wait_ms=50)
    lines = (numbers_corpus / "train.en").read_text(encoding="utf-8").splitlines()[:60]
    lines[3] = ""
    offline = Translator.from_model_dir(trained)

    async def clients():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:

            async def one(i):
                response = await client.post("/v1/translate", json={"text": lines[i::12]})
                return i, response.json()["translations"]

            return await asyncio.gather(*(one(i) for i in range(12)))

    expected = offline.translate(lines)
    for i, translations in asyncio.run(clients()):
        assert [t["text"] for t in translations] == expected[i::12]
    asked = {
        "text": lines[:8],
        "beam_size": 3,
        "n_best": 2,
        "scores": True,
        "alignments": engine.attention,
    }
    answer = server.post(asked).json()["translations"]
    beam = Translator.from_model_dir(trained, DecodeConfig(beam_size=3, n_best=2))
    for got, want in zip(
        answer, beam.translate_details(lines[:8], alignments=engine.attention), strict=True
    ):
        assert got["text"] == want.text and got["hypotheses"] == want.hypotheses
        assert got["log_prob"] == want.hypotheses[0]["log_prob"]
        assert engine.attention  # the fixture has attention: alignments are checked
        assert got["alignment"] == want.alignment
    info = httpx.get(server.url + "/v1/model").json()
    assert info["total"] == engine.model.count_params()


@pytest.mark.slow
def test_serve_loads_then_listens_and_sigterm_finishes_the_requests_in_flight(trained):
    """The CLI end to end: the port opens only once the model is loaded (the first
    /health answers), and SIGTERM lets a request in flight finish, then exits 0."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seq2seq_shared.cli",
            "serve",
            "--model-dir",
            str(trained),
            "--port",
            "0",
            "--max-batch-lines",
            "8",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = None
        for line in process.stderr:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
            if found:
                url = found.group(1)
                break
        assert url, "serve never said where it listens"
        threading.Thread(target=process.stderr.read, daemon=True).start()  # (keep it drained)
        assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
        lines = [f"{word} hundred" for word in ("one", "two", "three", "four")] * 40
        result = {}
        client = threading.Thread(
            target=lambda: result.update(
                response=httpx.post(
                    url + "/v1/translate", json={"text": lines, "beam_size": 4}, timeout=120
                )
            )
        )
        client.start()
        for _ in range(500):
            if httpx.get(url + "/health", timeout=10).json()["batching"]["pending_lines"]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the request never showed as in flight")
        process.send_signal(signal.SIGTERM)
        client.join(120)
        assert "response" in result, "the client thread failed"
        response = result["response"]
        assert response.status_code == 200 and len(response.json()["translations"]) == 160
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        pass


@pytest.mark.slow
def test_the_page_in_a_real_browser_types_translates_and_shows_an_alignment(trained, serve):
    """Debian's chromium and chromium-driver, driven by Selenium (.ci/run installs them)."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip(
            "needs Debian's chromium and chromium-driver packages "
            "(apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from seq2seq_shared.decoding.translator import Translator
    from seq2seq_shared.serve.engine import Engine

    engine = Engine(trained)
    server = serve(engine)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=driver_path)
    )
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "parameters" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "live").click()  # off: translate on the button only
        driver.find_element(By.ID, "source").send_keys("one hundred\ntwelve")
        driver.find_element(By.ID, "translate").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#output li")) == 2)
        shown = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#output li")]
        assert shown == Translator.from_model_dir(trained).translate(["one hundred", "twelve"])
        assert "2 lines in" in driver.find_element(By.ID, "timing").text
        assert engine.attention  # the fixture has attention: the alignment view is checked
        driver.find_elements(By.CSS_SELECTOR, "#output li")[0].click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#alignment tbody tr"))
        columns = driver.find_elements(By.CSS_SELECTOR, "#alignment thead th")
        assert len(columns) == 1 + len(engine.tokenizer.encode_source(["one hundred"])[0])
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_load_test_script_checks_every_answer_against_offline_translate(
    trained, numbers_corpus, tmp_path
):
    """scripts/load_test.py, shrunk: 3 clients for 2 seconds. Every answer must match the
    offline translation of its line, and the server must stop with exit code 0."""
    output = tmp_path / "load.json"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/load_test.py",
            "--model-dir",
            str(trained),
            "--lines",
            str(numbers_corpus / "train.en"),
            "--clients",
            "3",
            "--seconds",
            "2",
            "--warmup",
            "0.5",
            "--lines-per-request",
            "2",
            "--output",
            str(output),
            "--",
            "--max-wait-ms",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    (run,) = report["runs"]
    assert run["requests"] > 0 and run["lines"] == 2 * run["requests"]
    assert run["errors"] == 0 and run["mismatches"] == 0, run["examples"]
    assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"]
    assert report["offline_lines_per_second"] > 0 and report["sigterm_exit_code"] == 0
    assert report["serve_options"] == ["--max-wait-ms", "2"]
    assert report["batching"]["lines"] >= run["lines"]
    assert run["answered_lines"] == run["lines"] and 1 <= run["mean_batch_lines"] <= 6
    assert run["offline_in_server_batches_lines_per_second"] > 0


@pytest.mark.slow
def test_sigterm_with_a_stalled_client_answers_in_json_and_exits_within_the_grace(trained):
    """A client that sends 4 of 100 promised bytes gets a JSON 408 at the body timeout;
    a SIGTERM meanwhile exits 0 within the stated grace, with no traceback in the log."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seq2seq_shared.cli",
            "serve",
            "--model-dir",
            str(trained),
            "--port",
            "0",
            "--body-timeout",
            "3",
            "--request-timeout",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"on http://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "serve never said where it listens"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(
                b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"te'
            )
            time.sleep(0.5)
            stopped_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            answer = client.recv(65536).decode()
        assert " 408 " in answer.partition("\r\n")[0], answer
        assert json.loads(answer.split("\r\n\r\n", 1)[1])["status"] == 408
        assert process.wait(timeout=30) == 0
        grace = 3 + 2 + 5  # --body-timeout + --request-timeout + 5 (serve --help)
        assert time.monotonic() - stopped_at < grace
        log = process.stderr.read()
        assert "Traceback" not in log and "every request in flight was answered" in log, log
    finally:
        process.kill()


def test_a_request_cut_short_by_the_stop_gets_a_json_503_and_is_counted():
    """The safety net behind the grace period: a request still running when the server's
    stop cancels it is answered in JSON, and reported, never a plain-text 500."""
    from seq2seq_shared.serve.errors import BodyLimit

    async def forever(scope, receive, send):
        await asyncio.sleep(3600)

    sent, stopped = [], []
    limit = BodyLimit(forever, max_bytes=1000, timeout=60, stopped=stopped)

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    async def cut_short():
        task = asyncio.ensure_future(
            limit({"type": "http", "path": "/v1/translate", "headers": []}, receive, send)
        )
        await asyncio.sleep(0.05)
        task.cancel()  # what uvicorn does when the grace period runs out
        await task

    asyncio.run(cut_short())
    assert sent[0]["status"] == 503 and json.loads(sent[1]["body"])["status"] == 503
    assert stopped == ["/v1/translate"]
