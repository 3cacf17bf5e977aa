"""Browser tier: the widgets of notebooks 00 and 04, live in JupyterLab, driven in headless chromium.

A JupyterLab server on 127.0.0.1 with a token serves smoke-parameterised copies of the notebooks
from a temporary folder; Debian's chromium and chromedriver (no browser download at run time)
run every cell, operate the widgets and check what a student would see. Screenshots land in
``artifacts/browser/`` of the repository for a human to look at.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile

from asr_helpers import paths
from asr_helpers.tools.notebooks import NOTEBOOKS_DIR, load_profile, notebook_parameters

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = paths.REPO_ROOT / "artifacts" / "browser"
MISSING = ([str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
           + [m for m in ("jupyterlab", "selenium") if importlib.util.find_spec(m) is None]
           + ([] if shutil.which("flite") else ["flite"]))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (./run_all.sh setup installs them)")]
# ipywidgets' FileUpload clicks a detached <input type=file>, which opens the OS file dialog; this
# keeps that input in the page instead, so chromedriver can choose the file as a user would.
CATCH_FILE_INPUT = """
const click = HTMLInputElement.prototype.click;
HTMLInputElement.prototype.click = function () {
  if (this.type !== "file") return click.call(this);
  this.classList.add("caught-file-input");
  if (!this.isConnected) document.body.appendChild(this);
};
"""
LAB_SETTINGS = {  # full DOM rendering (every cell present) and no news pop-up over the notebook
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """Data, artifacts, lab settings and smoke-parameterised notebook copies in one temporary folder."""
    import papermill
    base = tmp_path_factory.mktemp("browser")
    env = dict(os.environ, ASR_DATA_DIR=str(base / "data"), ASR_ARTIFACTS_DIR=str(base / "artifacts"),
               WANDB_MODE="disabled", JUPYTER_CONFIG_DIR=str(base / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(base / "jupyter-runtime"),
               PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    for derived in ("ASR_CACHE_DIR", "ASR_RUNS_DIR"):
        env.pop(derived, None)
    profile = load_profile("smoke")
    (base / "notebooks").mkdir()
    for name in ("00_data_exploration", "04_lm_decoding"):
        source = NOTEBOOKS_DIR / f"{name}.ipynb"
        papermill.execute_notebook(str(source), str(base / "notebooks" / source.name), prepare_only=True,
                                   parameters=notebook_parameters(source, profile), progress_bar=False)
    (base / "jupyter-config").mkdir()  # no keep-alive pings: a busy machine must not drop the kernel socket
    (base / "jupyter-config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"tornado_settings": {"ws_ping_interval": 0}}}))
    for name, values in LAB_SETTINGS.items():
        (base / "lab-settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (base / "lab-settings" / name).write_text(json.dumps(values))
    return {"base": base, "env": env, "notebooks": base / "notebooks", "data": base / "data"}


@pytest.fixture(scope="module")
def smoke_run(workspace) -> None:
    """The smoke profile's 03_train run, headless, that notebook 04 decodes with."""
    trained = subprocess.run([sys.executable, "-m", "asr_helpers.tools.notebooks", "--profile", "smoke", "--only", "03"],
                             env=workspace["env"], capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]


@pytest.fixture(scope="module")
def lab_url(workspace):
    """A JupyterLab server on the workspace's notebooks; yields notebook name -> URL (with the token)."""
    port, token = _free_port(), secrets.token_hex(16)
    base = workspace["base"]
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={workspace['notebooks']}", f"--LabApp.user_settings_dir={base / 'lab-settings'}",
               f"--LabApp.workspaces_dir={base / 'lab-workspaces'}"]
    log = (base / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, env=workspace["env"], stdout=log, stderr=subprocess.STDOUT)

    def answers() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2).status == 200
        except OSError:
            assert server.poll() is None, (base / "jupyterlab.log").read_text()[-3000:]
            return False

    try:
        _wait_for(answers, 90, "JupyterLab to answer")
        # One JupyterLab workspace per notebook: the page holds that notebook only, no tabs from earlier.
        yield lambda notebook: (f"http://127.0.0.1:{port}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}"
                                f"?token={token}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, through its chromedriver; Selenium Manager stays offline."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2200"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_FILE_INPUT})
    yield driver
    driver.quit()


def _text(element) -> str:
    """The element's text whether or not it is scrolled into view (Selenium's ``.text`` is not)."""
    return element.get_attribute("textContent")


def _run_all_cells(driver, url: str):
    """Open a notebook, choose Run > Run All Cells, wait until every code cell has run; returns its panel."""
    from selenium.webdriver.common.by import By
    driver.get(url)
    panel = _wait_for(lambda: [p for p in driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel")
                               if p.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")], 90, "the notebook").pop()
    idle_polls = []

    def kernel_ready() -> bool:
        """Kernel idle for two polls in a row, any "Select Kernel" dialog answered with its default."""
        for accept in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"):
            accept.click()
            idle_polls.clear()
            return False
        idle_polls.append("Idle" in driver.find_element(By.ID, "jp-main-statusbar").text)
        return idle_polls[-2:] == [True, True]

    _wait_for(kernel_ready, 90, "the kernel to start", poll=1)
    run_menu = next(item for item in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if item.text == "Run")
    run_menu.click()
    _wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-command='runmenu:run-all']"), 10,
              "the Run menu").pop().click()

    prompts = []

    def finished() -> bool:
        for output in panel.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"):
            if "Traceback (most recent call last)" in _text(output):
                pytest.fail(f"a cell of {url.split('?')[0]} failed:\n{_text(output)[-3000:]}")
        prompts[:] = [_text(p).strip() for p in panel.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")]
        return bool(prompts) and all(p[1:-2].isdigit() for p in prompts)

    try:
        _wait_for(finished, 300, f"every cell of {url.split('?')[0]} to run", poll=1)
    except AssertionError as error:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / "run-all-timed-out.png"))
        raise AssertionError(f"{error}; cell prompts: {prompts}") from None
    return panel


def _widget_output(panel):
    from selenium.webdriver.common.by import By
    return panel.find_elements(By.CSS_SELECTOR, ".jupyter-widgets.widget-output")[-1]


def _shows(panel, texts: list[str], images: int = 1) -> bool:
    """The widget's output area holds an audio player, ``images`` images and every one of ``texts``."""
    from selenium.webdriver.common.by import By
    output = _widget_output(panel)
    return (bool(output.find_elements(By.TAG_NAME, "audio")) and len(output.find_elements(By.TAG_NAME, "img")) >= images
            and all(text in _text(output) for text in texts))


def _widget_cell(panel):
    return _widget_output(panel).find_element("xpath", "ancestor::div[contains(@class, 'jp-Cell')]")


def _screenshot(driver, panel, name: str) -> None:
    """The cell holding the widget, as a student sees it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    cell = _widget_cell(panel)
    driver.execute_script("arguments[0].scrollIntoView()", cell)
    cell.screenshot(str(SCREENSHOTS / f"{name}.png"))


def _corpus(workspace) -> Path:
    return next(workspace["data"].glob("synthetic-*/LibriSpeech"))


def _transcripts(workspace, split: str) -> dict[str, str]:
    from asr_helpers.data.manifest import index_split
    return {u.id: u.text for u in index_split(_corpus(workspace), split).utterances}


def test_utterance_browser_in_jupyterlab(browser, lab_url, workspace):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    panel = _run_all_cells(browser, lab_url("00_data_exploration.ipynb"))
    split_box, utterance_box = (Select(s) for s in panel.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"))
    first_split, first = _text(split_box.first_selected_option), _text(utterance_box.first_selected_option)
    assert _transcripts(workspace, first_split)[first] in _text(_widget_cell(panel))  # the headless copy
    split_box.select_by_visible_text("dev-clean")
    _wait_for(lambda: _shows(panel, ["| dev-clean |"]), 60, "the first dev-clean utterance")
    utterance_box.select_by_index(1)
    chosen = _text(utterance_box.first_selected_option)
    transcript = _transcripts(workspace, "dev-clean")[chosen]
    _wait_for(lambda: _shows(panel, [chosen, transcript]), 60, f"utterance {chosen} in the browser")
    assert first not in _text(_widget_cell(panel))  # the first interaction removed the headless copy
    _screenshot(browser, panel, "00-utterance-browser")


def test_transcription_panel_in_jupyterlab(smoke_run, browser, lab_url, workspace, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    panel = _run_all_cells(browser, lab_url("04_lm_decoding.ipynb"))
    references = _transcripts(workspace, "test-clean")
    utterance_box = Select(panel.find_element(By.CSS_SELECTOR, ".widget-dropdown select"))
    utterance_box.select_by_index(1)
    chosen = _text(utterance_box.first_selected_option)
    _wait_for(lambda: _shows(panel, [references[chosen], "lm        : "], images=2), 60, "the picked utterance")
    _screenshot(browser, panel, "04-picked-utterance")

    decoder_buttons = panel.find_elements(By.CSS_SELECTOR, ".widget-toggle-buttons button")
    next(button for button in decoder_buttons if _text(button) == "greedy").click()
    _wait_for(lambda: _shows(panel, [references[chosen], "greedy    : "], images=2), 60, "the greedy transcript")

    flac = next(_corpus(workspace).glob(f"test-clean/*/*/{chosen}.flac"))
    wav = tmp_path / "my recording.wav"
    audio, rate = soundfile.read(flac)
    soundfile.write(wav, audio, rate)
    panel.find_element(By.CSS_SELECTOR, ".widget-upload").click()
    _wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "input.caught-file-input"), 10,
              "the upload's file input").pop().send_keys(str(wav))
    _wait_for(lambda: _shows(panel, ["my recording.wav", "greedy    : "], images=2), 60, "the uploaded file")
    assert references[chosen] not in _text(_widget_output(panel))  # the upload replaced the picked utterance
    _screenshot(browser, panel, "04-uploaded-file")
