"""Photograph an evaluation report page with headless Chromium: a PNG for the README
(docs/img/report.png), or a PDF to check the page prints.

    python scripts/report_screenshot.py report.html docs/img/report.png
    python scripts/report_screenshot.py report.json report.pdf   # a stored report, rendered first

Chromium rather than a Python HTML renderer because the page is judged by what a loan officer's
browser shows and prints. The default window is A4 at 150 dpi (1240 x 1754 pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

A4_150DPI = (1240, 1754)
#: Tried in order after ``$FEDCREDIT_CHROMIUM``: Debian's package, Ubuntu's, Google's builds.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    override = os.environ.get("FEDCREDIT_CHROMIUM")
    if override:
        return shutil.which(override)
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


def capture(html: Path, out: Path, size: tuple[int, int] = A4_150DPI,
            timeout_s: float = 60) -> Path:
    """Write ``out``: a screenshot of ``html`` at ``size``, or its print (A4, the page's own
    ``@page`` rules) when ``out`` ends in ``.pdf``.

    A throwaway profile directory per call, so that parallel calls (test workers) never share
    Chromium's profile lock.
    """
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("Chromium not found (install Debian's `chromium`, or set "
                           "FEDCREDIT_CHROMIUM)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a stale file must not pass for a fresh one
    target = (f"--print-to-pdf={out}" if out.suffix.lower() == ".pdf"
              else f"--screenshot={out}")
    with tempfile.TemporaryDirectory(prefix="fedcredit-chromium-") as profile:
        command = [
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
            "--force-device-scale-factor=1", "--no-pdf-header-footer",
            f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", target,
            html.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                check=False)
    if result.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium exited {result.returncode} without writing {out}: "
                           f"{result.stderr.strip()[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("page", type=Path,
                        help="a report page (.html) or a stored report (.json, as "
                             "GET /v1/evaluations/{id} or EvaluationReport.to_dict() gives it)")
    parser.add_argument("out", type=Path, help="the PNG (or .pdf) to write")
    parser.add_argument("--size", default=f"{A4_150DPI[0]}x{A4_150DPI[1]}",
                        help="window size WIDTHxHEIGHT in pixels (default A4 at 150 dpi)")
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    size = (int(width), int(height))
    if args.page.suffix.lower() != ".json":
        print(capture(args.page, args.out, size))
        return 0
    from node.report_page import write_report_page  # only this path needs the package

    doc = json.loads(args.page.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        page = write_report_page(doc, Path(tmp) / "report.html")
        print(capture(page, args.out, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
