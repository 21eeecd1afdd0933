"""A free local port and headless Chromium for the tests that serve the demo page.

    port = free_port()
    browser = headless_chromium(tmp_path / "profile")      # selenium WebDriver; .quit() it
"""

from __future__ import annotations

import os
import socket

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAVE_CHROMIUM = os.path.exists(CHROMIUM) and os.path.exists(DRIVER)
NO_CHROMIUM = (f"needs Chromium and its driver ({CHROMIUM}, {DRIVER}; Debian: "
               "apt-get install chromium chromium-driver)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def headless_chromium(profile_dir):
    """-> a selenium Chrome driver on the system Chromium: headless, 1280x1400, no network
    services of its own, a fresh profile in `profile_dir`."""
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER),
                            options=options)
