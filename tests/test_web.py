"""``magi serve`` as a person uses it: a real headless Chromium (Debian's, with its driver) on loopback submits a
t2v job, sees frames before the job ends, sets the next chunk's prompt while it runs, and plays the result; a bad
request is answered with a message and the server keeps serving."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BROWSER, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (BROWSER and DRIVER) and os.environ.get("CI"):
    raise RuntimeError("CI needs chromium and chromedriver (scripts/setup.sh installs them)")
pytestmark = pytest.mark.skipif(not (BROWSER and DRIVER), reason="needs chromium and chromedriver")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from magi.api import Magi
    from magi.serve import Studio, serve

    studio = Studio(Magi.load("physics-64", device="cpu"), tmp_path_factory.mktemp("jobs"), max_queue=2)
    httpd = serve(studio, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{httpd.server_address[1]}", studio
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def wait(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_person_generates_watches_it_grow_steers_it_and_plays_it(server, browser):
    from selenium.webdriver.common.by import By

    url, studio = server
    browser.get(url)
    find = lambda element_id: browser.find_element(By.ID, element_id)  # noqa: E731
    frames = find("frames")
    frames.clear()
    frames.send_keys("240")  # 10 chunks
    find("go").click()
    # frames appear while the job still runs: a chunk is shown with the status still "running"
    seen = wait(lambda: find("status").text == "running" and int(find("chunks").text) >= 1
                and browser.execute_script("return document.getElementById('latest').naturalWidth") > 0
                and find("status").text, 120, "a chunk while running")
    assert seen == "running"
    assert not find("image-box").is_displayed() and not find("video-box").is_displayed()  # t2v: no pickers
    find("next-prompt").send_keys("a blue ball rolls to the right")
    find("set-prompt").click()
    wait(lambda: find("status").text == "done", 300, "the job to finish")
    assert find("frames-done").text == "240" and find("error").text == ""
    # the finished video plays in the page
    wait(lambda: browser.execute_script("return document.getElementById('live').readyState") >= 2, 30,
         "the video to load")
    duration = browser.execute_script("return document.getElementById('live').duration")
    assert duration == pytest.approx(240 / 8, abs=0.5)
    browser.execute_script("document.getElementById('live').play()")
    wait(lambda: browser.execute_script("return document.getElementById('live').currentTime") > 0.2, 20,
         "playback")
    screenshot = os.environ.get("MAGI_SCREENSHOT")
    if screenshot:
        browser.execute_script("window.scrollTo(0, 0)")
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(screenshot)


def test_bad_requests_get_a_message_and_the_server_keeps_serving(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, studio = server
    browser.get(url)
    Select(browser.find_element(By.ID, "mode")).select_by_visible_text("i2v")
    browser.find_element(By.ID, "go").click()  # no image chosen
    message = wait(lambda: browser.find_element(By.ID, "error").text, 10, "the error message")
    assert "image" in message and "\n" not in message

    def post(path: str, body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(url + path, data=body, method="POST")
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert post("/api/jobs", b"{not json")[0] == 400
    assert post("/api/jobs", json.dumps({"prompt": "x", "num_frames": 10**9}).encode())[0] == 400
    assert post("/api/jobs", json.dumps({"prompt": "x", "mode": "v2v", "video": "data:video/mp4;base64,AAAA"})
                .encode())[0] == 400
    assert post("/api/jobs/nope/prompt", b"{}")[0] == 404
    code, body = post("/api/jobs", json.dumps({"prompt": "a red ball", "num_frames": 24}).encode())
    assert code == 200 and wait(lambda: studio.job(body["id"]).state == "done", 60, "a good job after bad ones")


def test_the_queue_is_bounded(tmp_path):
    import threading
    from types import SimpleNamespace

    from magi.serve import QueueFull, Studio

    class Slow:  # a model stand-in whose jobs wait until released
        frames_per_chunk, fps = 24, 8
        cfg = SimpleNamespace(sampler=SimpleNamespace(procedure="native"))
        release = threading.Event()

        def context_frames(self):
            return 48

        def request(self, *args, **kwargs):
            return None

        def stream(self, *args, **kwargs):
            self.release.wait(10)
            yield from ()

    studio = Studio(Slow(), tmp_path, max_queue=2)
    first = studio.submit({"prompt": "x"})
    wait(lambda: first.state == "running", 5, "the first job to start")
    for _ in range(2):  # two more wait in the queue
        studio.submit({"prompt": "x"})
    with pytest.raises(QueueFull):
        studio.submit({"prompt": "x"})
    assert first.state == "running"  # still blocked: the queue was full while it ran
    Slow.release.set()
