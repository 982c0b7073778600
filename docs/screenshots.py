"""Screenshots of TensorBoard pages, as a person sees them, for the docs (docs/*.png).

    python -m docs.screenshots LOGDIR OUT_DIR [--port 6123]

Starts a real TensorBoard on 127.0.0.1 over LOGDIR (one app's runs) and drives
headless Chromium (Debian's `chromium`) over the DevTools protocol on a pipe:
it opens each page, ticks "Show actual image size" where there are images (as
a reader would, so pictures show at the size they were drawn), waits for the
page to settle and saves a PNG. Nothing here is part of the suite's runtime.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGES = {  # file name: (page, height in pixels, JavaScript run before the shot)
    "scalars": ("#timeseries", 1200, ""),
    "images": ("#images", 2600, "actualSize"),
    "text": ("#text", 1600, ""),
    "hparams": ("#hparams", 900, ""),
    "projector": ("#projector", 1000, ""),
}

# Finds an element by its text through every shadow root (TensorBoard's Polymer pages) and clicks it.
CLICK = """
(() => {
  const seen = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'PAPER-CHECKBOX' && (el.textContent || '').includes('Show actual image size')) seen.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  seen.forEach((el) => { if (!el.checked) el.click(); });
  return seen.length;
})()
"""


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe (fd 3 in, fd 4 out; NUL-separated JSON)."""

    def __init__(self):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():  # in the child: the pipe ends at the descriptors Chromium reads and writes
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.process = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", "--user-data-dir=/tmp/tb-screenshots-profile", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # 3, 4: from fds()
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer, self.next_id = b"", 0

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params,
                   **({"sessionId": session} if session else {})}
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                self.buffer += os.read(self.from_chrome, 1 << 20)
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def shot(self, url: str, path: Path, width: int, height: int, script: str, settle: float = 8.0) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.enable", session)
        self.call("Page.navigate", session, url=url)
        time.sleep(settle)
        if script == "actualSize":
            self.call("Runtime.evaluate", session, expression=CLICK)
            time.sleep(3)
        data = self.call("Page.captureScreenshot", session, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        self.call("Target.closeTarget", targetId=target)

    def close(self):
        self.process.kill()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    parser.add_argument("out")
    parser.add_argument("--port", type=int, default=6123)
    parser.add_argument("--prefix", default="", help="file name prefix, e.g. the app's name")
    parser.add_argument("--pages", default=",".join(PAGES), help="which of: " + ", ".join(PAGES))
    args = parser.parse_args(argv)
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--port",
                              str(args.port),
                              "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    browser = None
    try:
        base = f"http://127.0.0.1:{args.port}/"
        for _ in range(60):
            try:
                urllib.request.urlopen(base + "data/plugins_listing", timeout=2)
                break
            except OSError:
                time.sleep(1)
        browser = Browser()
        for name in args.pages.split(","):
            page, height, script = PAGES[name]
            path = out / f"{args.prefix}{name}.png"
            browser.shot(base + page, path, 1400, height, script)
            print(path)
    finally:
        if browser:
            browser.close()
        board.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
