"""Refresh the README's screenshot of the HTML report: `python -m tests.screenshots`.

Runs the browser test of the report (a real stream through Temporal, rendered
by headless Chromium), which saves its screenshots under tests/artifacts/, and
copies the desktop one to docs/report.png.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOT = REPO / "tests" / "artifacts" / "report-desktop.png"
TARGET = REPO / "docs" / "report.png"


def main() -> int:
    SHOT.unlink(missing_ok=True)
    test = "tests/test_report_html.py::test_report_renders_in_chromium_on_desktop_and_phone"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", test], cwd=REPO)
    if done.returncode != 0 or not SHOT.is_file():
        print("the browser test failed: no screenshot", file=sys.stderr)
        return 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHOT, TARGET)
    print(TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
