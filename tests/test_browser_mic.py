"""Browser tier: notebook 04's microphone panel, live in JupyterLab, fed by chromium's fake microphone.

Chromium's fake capture device plays a WAV file as the microphone (``--use-file-for-fake-audio-capture``);
the panel records it at 16 kHz and the kernel streams it through the tiny ds2_stream export of
``tests/fixtures/stream/``. The test checks that partial transcripts appear while the file still plays,
that Stop gives what ``transcribe --stream`` gives for the same file (up to the browser's resampling and
the silence it records before and after), and that a denied permission, a missing microphone and a
restarted kernel each end as one line in the panel with Record usable again. Serving and driving
follow ``tests/test_browser.py``, whose helpers and JupyterLab fixture this module uses.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest
import soundfile

from asr_helpers.data.audio import load_audio
from asr_helpers.decoding.metrics import cer
from asr_helpers.tools.notebooks import NOTEBOOKS_DIR
from test_browser import (CHROMEDRIVER, CHROMIUM, LAB_SETTINGS, MISSING, SCREENSHOTS, _run_all_cells, _text,
                          _wait_for)
from test_browser import lab_url  # noqa: F401  (test_browser's JupyterLab server, serving this module's workspace)

STREAM_FIXTURE = Path(__file__).parent / "fixtures" / "stream"
PAD_SECONDS = 1.0  # silence before the speech (what the browser loses while it opens the microphone) and after
# The browser starts recording a few ms before the file plays, at no particular phase of the model's frames; a
# tiny model's transcript changes with that phase (on the fixture, 3-15 ms more leading silence changes up to
# half its characters), so the browser's transcript is compared with transcribe --stream on the file started at
# each phase (every ms of PHASES_MS), and must be within MAX_CER of the closest: what chromium's resampling
# (16 -> 44.1 kHz fake device -> 16 kHz AudioContext) and the sub-ms rest of the shift change.
PHASES_MS = range(20)  # one output frame of the fixture model (20 ms)
MAX_CER = 0.15
REFUSE = """
const devices = navigator.mediaDevices, name = arguments[0];
devices.realGetUserMedia = devices.realGetUserMedia || devices.getUserMedia.bind(devices);
devices.getUserMedia = name ? () => Promise.reject(new DOMException("refused by the test", name))
                            : devices.realGetUserMedia;
"""  # getUserMedia refusing as a browser does (argument: the DOMException's name), or as it was (null)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} (./run_all.sh setup installs them)")]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """The fixture's shortest recording with PAD_SECONDS of silence each side, as 16-bit 16 kHz WAV (chromium's mic)."""
    recordings = [p for p in STREAM_FIXTURE.iterdir() if p.suffix in (".wav", ".flac")]
    wave = load_audio(min(recordings, key=lambda p: soundfile.info(p).duration)).numpy()
    pad = np.zeros(int(16000 * PAD_SECONDS), np.float32)
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    soundfile.write(path, np.concatenate([pad, wave, pad]), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """A notebook: a cell naming the fixture model, notebook 04's microphone cell; JupyterLab's settings."""
    base = tmp_path_factory.mktemp("browser-mic")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(base / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(base / "jupyter-runtime"), ASR_ARTIFACTS_DIR=str(base / "artifacts"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    source = nbformat.read(NOTEBOOKS_DIR / "04_lm_decoding.ipynb", as_version=4)
    panel_cell = next(c for c in source.cells if "mic-panel" in c.metadata.get("tags", []))
    setup = f"from pathlib import Path\ncheckpoint_path, lm_path = Path({str(STREAM_FIXTURE / 'model.pt')!r}), None"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup), panel_cell,
                                               nbformat.v4.new_code_cell("mic.recorder.ack_timeout_s = 5")])
    notebook.metadata = source.metadata
    (base / "notebooks").mkdir()
    nbformat.write(notebook, base / "notebooks" / "mic.ipynb")
    (base / "jupyter-config").mkdir()
    (base / "jupyter-config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"tornado_settings": {"ws_ping_interval": 0}}}))
    for name, values in LAB_SETTINGS.items():
        (base / "lab-settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (base / "lab-settings" / name).write_text(json.dumps(values))
    return {"base": base, "env": env, "notebooks": base / "notebooks"}


@pytest.fixture(scope="module")
def mic_browser(speech):
    """Debian's chromium, headless, whose microphone plays ``speech`` once (then silence), permission granted."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1280,1600", "--autoplay-policy=no-user-gesture-required",
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={speech}%noloop"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(mic_browser, lab_url):
    """The notebook run in JupyterLab: (its panel, the microphone panel in it). The tests below use it in turn."""
    panel = _run_all_cells(mic_browser, lab_url("mic.ipynb"))
    return panel, Mic(mic_browser, panel)


def _stream_transcripts(speech: Path, tmp_path: Path) -> dict[int, str]:
    """What ``transcribe --stream`` writes for the file started ``ms`` later, for each ms of PHASES_MS (in 2 s
    chunks: the Streamer's output does not depend on the chunking, and this is faster)."""
    wave, rate = soundfile.read(speech, dtype="float32")
    (tmp_path / "in").mkdir()
    for ms in PHASES_MS:
        later = np.concatenate([np.zeros(rate * ms // 1000, np.float32), wave])
        soundfile.write(tmp_path / "in" / f"{ms:02d}.wav", later, rate, subtype="PCM_16")
    done = subprocess.run([sys.executable, "-m", "asr_helpers", "transcribe", "--stream", "--checkpoint",
                           str(STREAM_FIXTURE / "model.pt"), "--input", str(tmp_path / "in"), "--output",
                           str(tmp_path / "out"), "--chunk-ms", "2000"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {ms: (tmp_path / "out" / f"{ms:02d}.txt").read_text().strip() for ms in PHASES_MS}


class Mic:
    """The panel's parts as the page shows them."""

    def __init__(self, driver, panel):
        from selenium.webdriver.common.by import By
        self.driver = driver
        self.root = _wait_for(lambda: panel.find_elements(By.CSS_SELECTOR, ".asr-mic"), 30, "the microphone panel")[0]
        self.record, self.stop = (self.root.find_element(By.CSS_SELECTOR, f".asr-mic-{b}") for b in ("record", "stop"))

    def part(self, name: str) -> str:
        from selenium.webdriver.common.by import By
        return _text(self.root.find_element(By.CSS_SELECTOR, f".asr-mic-{name}"))

    def seconds(self) -> float:
        return float(self.root.get_attribute("data-seconds") or 0)

    def failed(self) -> str:
        status = self.root.find_element("css selector", ".asr-mic-status")
        return _text(status) if "asr-mic-failed" in status.get_attribute("class") else ""


def _screenshot(mic: Mic, name: str) -> None:
    """The notebook cell holding the panel (and the figures under it), as a student sees it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    cell = mic.root.find_element("xpath", "ancestor::div[contains(@class, 'jp-Cell')]")
    mic.driver.execute_script("arguments[0].scrollIntoView()", cell)
    cell.screenshot(str(SCREENSHOTS / f"{name}.png"))


def _record(mic: Mic, until_seconds: float) -> tuple[str, list[tuple[float, str]]]:
    """Press Record, note (seconds recorded, partial transcript) until ``until_seconds`` are recorded, press Stop;
    returns the status line while recording and the notes."""
    mic.record.click()
    _wait_for(lambda: mic.stop.is_enabled() or mic.failed(), 30, "the recording to start")
    assert not mic.failed(), mic.failed()
    status, seen = mic.part("status"), []
    deadline = time.monotonic() + until_seconds + 30
    while mic.seconds() < until_seconds and time.monotonic() < deadline and not mic.failed():
        seen.append((mic.seconds(), mic.part("partial")))
        time.sleep(0.1)
    mic.stop.click()
    return status, seen


def test_speaking_gives_partials_then_the_streamed_transcript(page, speech, tmp_path):
    panel, mic = page
    total = soundfile.info(speech).duration
    status, seen = _record(mic, total - PAD_SECONDS / 2)
    final = _wait_for(lambda: mic.part("final"), 30, "the final transcript")
    assert not mic.failed(), mic.failed()
    speech_end = total - PAD_SECONDS
    early = [(s, text) for s, text in seen if text and s < speech_end - 0.3]
    assert early, f"no partial transcript before the speech ended at {speech_end:.2f} s: {seen[-5:]}"
    assert len({text for _, text in seen}) >= 3  # it grew, more than once
    greedy = final.splitlines()[0].split(":", 1)[1].strip()
    streamed = _stream_transcripts(speech, tmp_path)
    phase = min(streamed, key=lambda ms: cer([streamed[ms]], [greedy]))
    error = cer([streamed[phase]], [greedy])
    print(f"{status}\nbrowser: {greedy!r}\ntranscribe --stream, file as is: {streamed[0]!r} (CER "
          f"{cer([streamed[0]], [greedy]):.3f}); started {phase} ms later: {streamed[phase]!r} (CER {error:.3f}); "
          f"first partial at {early[0][0]:.2f} s of {speech_end:.2f} s of speech")
    assert error <= MAX_CER, (greedy, streamed, error)
    _wait_for(lambda: len(panel.find_elements("css selector", ".widget-output img")) >= 2, 30,
              "the log-mel and CTC figures")
    _screenshot(mic, "04-microphone")


@pytest.mark.parametrize("refusal, line", [("NotAllowedError", "microphone permission denied"),
                                           ("NotFoundError", "no microphone found")])
def test_a_refused_microphone_is_one_line(page, mic_browser, refusal, line):
    _, mic = page
    mic_browser.execute_script(REFUSE, refusal)
    try:
        mic.record.click()
        message = _wait_for(mic.failed, 10, f"the {refusal} message")
    finally:
        mic_browser.execute_script(REFUSE, None)
    assert message.startswith(line) and "\n" not in message
    assert mic.record.is_enabled() and not mic.stop.is_enabled()
    _screenshot(mic, f"04-microphone-{refusal}")


def test_a_restarted_kernel_is_one_line(page, lab_url):
    _, mic = page
    url = lab_url("mic.ipynb")
    server, token = url.split("/lab/")[0], url.split("token=")[1]
    sessions = json.load(urllib.request.urlopen(f"{server}/api/sessions?token={token}", timeout=10))
    kernel = next(s["kernel"]["id"] for s in sessions if s["path"].endswith("mic.ipynb"))
    urllib.request.urlopen(urllib.request.Request(f"{server}/api/kernels/{kernel}/restart?token={token}",
                                                  method="POST", data=b""), timeout=60)
    mic.record.click()
    message = _wait_for(mic.failed, 30, "the kernel message")
    assert "kernel" in message and "run this cell again" in message and "\n" not in message
    assert mic.record.is_enabled() and not mic.stop.is_enabled()
    _screenshot(mic, "04-microphone-kernel-restarted")
