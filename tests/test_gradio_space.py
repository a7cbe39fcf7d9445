"""The Gradio Space demo, served on 127.0.0.1 from a subprocess: called through ``gradio_client`` and clicked in a
real headless browser (Debian's Chromium driven by Playwright; never ``playwright install``).

The browser test keeps its full-page screenshot in its pytest tmp dir; set ``VAEBM_SCREENSHOT_DIR`` (e.g. to
``benchmarks/results``) to also copy it there as ``gradio_screenshot.png``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_pipeline
from PIL import Image

if importlib.util.find_spec("gradio") is None:  # the app subprocess imports it; no need to pay for that here
    pytest.skip("the demo needs gradio (pip install gradio)", allow_module_level=True)
gradio_client = pytest.importorskip("gradio_client", reason="these tests need gradio_client")

APP = Path(__file__).resolve().parents[1] / "examples" / "gradio_space" / "app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT_IDS = ("vae_samples", "vaebm_samples", "energy_plot", "chain_animation")
STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not serve {url} within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """``python examples/gradio_space/app.py --model <tiny saved pipeline> --port N``, offline, for this module."""
    root = tmp_path_factory.mktemp("gradio_space")
    make_tiny_pipeline().save_pretrained(root / "pipeline")
    port, log = free_port(), root / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(root)}
    env.pop("GRADIO_SERVER_NAME", None)
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, str(APP), "--model", str(root / "pipeline"), "--port", str(port)],
            cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_generate_api_returns_vae_and_vaebm_grids(app_url, tmp_path):
    client = gradio_client.Client(app_url, verbose=False, download_files=str(tmp_path))
    # model ("" = the app's --model), images, Langevin steps, step size, temperature, seed
    vae, vaebm, plot, animation, status = client.predict("", 4, 3, 5e-2, 1.0, 0, api_name="/generate")

    assert pixels(vae).shape == pixels(vaebm).shape == (134, 134, 3)  # 2x2 grid of 8x8 samples upscaled to 64 px
    assert not np.array_equal(pixels(vae), pixels(vaebm))  # the chain moved the samples
    assert pixels(plot).shape[0] > 100
    with Image.open(animation) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4  # the start and the 3 chain states
    assert "K = 3 Langevin steps" in status and "Mean energy" in status

    vae_0, vaebm_0, *_ = client.predict("", 4, 0, 5e-2, 1.0, 0, api_name="/generate")
    np.testing.assert_array_equal(pixels(vae_0), pixels(vae))  # same seed, same initial noise
    np.testing.assert_array_equal(pixels(vaebm_0), pixels(vae))  # K = 0 is the plain VAE
    again = client.predict("", 4, 3, 5e-2, 1.0, 0, api_name="/generate")[1]
    np.testing.assert_array_equal(pixels(again), pixels(vaebm))  # seeded: the same request gives the same images


@pytest.mark.parametrize(
    "request_args, message",
    [((10_000, 3, 5e-3, 1.0, 0), "64"), ((4, 1_000_000, 5e-3, 1.0, 0), "500"), ((4, 3, 5.0, 1.0, 0), "0.1")],
    ids=["images", "steps", "step_size"],
)
def test_generate_api_rejects_out_of_bounds_requests(app_url, request_args, message, tmp_path):
    client = gradio_client.Client(app_url, verbose=False, download_files=str(tmp_path))
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        client.predict("", *request_args, api_name="/generate")


def test_browser_click_generate_shows_images(app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    if not Path(CHROMIUM).is_file() or shutil.which("chromium") is None:
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    screenshot = tmp_path / "gradio_screenshot.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app_url)
            page.get_by_role("button", name="Generate").click()
            selectors = [f"#{id} img" for id in OUTPUT_IDS]
            loaded = "ss => ss.map(s => document.querySelector(s)).every(i => i && i.complete && i.naturalWidth > 0)"
            page.wait_for_function(loaded, arg=selectors, timeout=60_000)
            size = "i => [i.naturalWidth, i.naturalHeight]"
            sizes = {id: page.eval_on_selector(f"#{id} img", size) for id in OUTPUT_IDS}
            status = page.inner_text("#status")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert sizes["vae_samples"] == sizes["vaebm_samples"] == [266, 266]  # 4x4 grid of 16 upscaled 8x8 samples
    assert sizes["chain_animation"] == [266, 266] and sizes["energy_plot"][0] > 100
    assert "16 samples" in status and "Mean energy" in status
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("VAEBM_SCREENSHOT_DIR"):
        target = Path(os.environ["VAEBM_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target / "gradio_screenshot.png")


def load_app_module():
    spec = importlib.util.spec_from_file_location("vaebm_space_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_space_serves_only_its_models_and_never_echoes_input(app_url, tmp_path):
    client = gradio_client.Client(app_url, verbose=False, download_files=str(tmp_path))
    probe = "/etc/" + "x" * 100_000
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        client.predict(probe, 4, 3, 5e-2, 1.0, 0, api_name="/generate")
    assert "unknown model" in str(error.value) and "xxxx" not in str(error.value)
    with pytest.raises(gradio_client.exceptions.AppError, match="whole number"):
        client.predict("", 4, 1.9, 5e-2, 1.0, 0, api_name="/generate")  # never silently truncated
    with pytest.raises(gradio_client.exceptions.AppError, match="at most 6400"):
        client.predict("", 64, 200, 5e-2, 1.0, 0, api_name="/generate")


def test_request_checks_and_queue_bounds():
    app = load_app_module()
    for bad in (float("nan"), 1.9, True, "3"):
        with pytest.raises(app.gr.Error):
            app.check_request(4, bad, 1e-3, 1.0, 0)
    assert app.check_request(4.0, 3.0, 1e-3, 1.0, 7.0) == (4, 3, 1e-3, 1.0, 7)
    demo = app.build_demo({"tiny": make_tiny_pipeline()})
    assert demo._queue.max_size == app.QUEUE_SIZE


def test_without_a_model_the_space_serves_the_bundled_trained_pipeline():
    app = load_app_module()
    (name,) = app.model_names("")
    models = app.load_models([name])
    pipe = models[name]
    assert pipe.ebm.linear.weight.abs().sum() > 0  # a trained energy network, not the zero placeholder
    files = [p for p in app.BUNDLED_PIPELINE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 3_000_000


def test_readme_client_example_quotes_the_shipped_pipelines_saved_chain_length_and_step():
    """The Space README's API example repeats the bundled pipeline's saved K and step as literals; they must match."""
    app = load_app_module()
    config = json.loads((app.BUNDLED_PIPELINE / "scheduler" / "scheduler_config.json").read_text())
    readme = (APP.parent / "README.md").read_text()
    chain_length = re.search(r"^\s*(\d+),\s*# the bundled digits pipeline's saved chain length", readme, re.M)
    step_size = re.search(r"^\s*([0-9.e-]+),\s*# and its saved step size", readme, re.M)
    assert chain_length and step_size, "the README's client example lost its chain-length or step-size line"
    assert int(chain_length.group(1)) == config["default_num_inference_steps"]
    assert float(step_size.group(1)) == config["step_size"]
