"""Real-browser fixtures: Debian Chromium via pytest-playwright, `streamlit run app.py` on a free
loopback port over a copy of the tiny real store of tests/conftest.py (`tiny_home`).

The app holds its DuckDB file open (one writer per process), so a test reads the store only after
`server.stop()`. Screenshots go to <repo>/test-artifacts/ (git-ignored).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from analyst.cli import streamlit_command

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Override pytest-playwright: use Debian's /usr/bin/chromium, never a downloaded browser."""
    if not Path(CHROMIUM).exists():
        msg = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # tall viewport: Streamlit scrolls inside its own container, so full_page screenshots = viewport
    return {**browser_context_args, "viewport": {"width": 1280, "height": 1000}}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A `streamlit run app.py` subprocess; `stop()` ends it (by its PID) and frees the store."""

    home: Path
    url: str
    proc: subprocess.Popen
    log: Path
    env: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this PID only, never by name
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(home: Path, log_path: Path, extra_env: dict | None = None, timeout: float = 90, *,
                 port: int | None = None, extra_args: list[str] | None = None) -> Server:
    port = port or free_port()
    env = {**os.environ, "SLEUTH_HOME": str(home), **(extra_env or {})}
    for key in ("SLEUTH_DB", "SLEUTH_MODELS"):
        env.pop(key, None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*streamlit_command(port), *(extra_args or [])], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    server = Server(home=home, url=f"http://127.0.0.1:{port}", proc=proc, log=log_path, env=env)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return server
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit not ready in {timeout:.0f}s:\n{log_path.read_text()}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="module")
def browser_home(tiny_home, tmp_path_factory) -> Path:
    """A private copy of the tiny home (tests/conftest.py): the browser test writes decisions."""
    target = tmp_path_factory.mktemp("browser") / "home"
    shutil.copytree(tiny_home.home, target)
    return target


@pytest.fixture(scope="module")
def server(browser_home, tmp_path_factory):
    """The app serving `browser_home` as analyst "browser-analyst" (via SLEUTH_ANALYST)."""
    srv = start_server(browser_home, tmp_path_factory.mktemp("log") / "streamlit.log",
                       {"SLEUTH_ANALYST": "browser-analyst"})
    try:
        yield srv
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------ sign-in
@pytest.fixture(scope="session")
def oidc_provider():
    """A real OpenID Connect provider on loopback (`oidc-provider-mock`, from PyPI): any client id
    is accepted; its login form takes the identity (`sub`, also sent as the `email` claim)."""
    mock = pytest.importorskip("oidc_provider_mock")
    with mock.run_server_in_thread(port=free_port()) as server:
        yield f"http://localhost:{server.server_port}"


def sign_in_server(home: Path, log_dir: Path, provider: str, extra_env: dict | None = None) -> Server:
    """The app over `home` with sign-in configured against `provider` (a secrets.toml of its own)."""
    port = free_port()
    secrets = log_dir / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "browser-test-cookie-secret-0123456789"\n'
        'client_id = "sleuth-browser-test"\n'
        'client_secret = "sleuth-browser-test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    return start_server(home, log_dir / "streamlit.log", {"SLEUTH_ANALYST": "", **(extra_env or {})}, port=port,
                        extra_args=["--secrets.files", str(secrets)])


def shown_as(text: str) -> "re.Pattern[str]":
    """`text` as the page shows data: an e-mail's "@" follows a zero-width space (views/text.esc
    breaks autolinks), so match with or without it."""
    return re.compile(re.escape(text).replace("@", "\u200b?@"))


def sign_in(page, url: str, identity: str, path: str = "") -> None:
    """Sign `identity` in through the provider's form, then open `path` (e.g. case?user=u1)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/{path}")
    page.get_by_role("button", name="Sign in").click()
    page.locator("input[name=sub]").fill(identity)           # the provider's own login form
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_text(shown_as(f"Signed in: {identity}"))).to_be_visible(timeout=90_000)
    if path:
        page.goto(f"{url}/{path}")
