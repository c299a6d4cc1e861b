"""Declared ranges are tested ranges: each lower bound in setup.cfg is the exact
version constraints.txt pins, which CI installs and the whole suite runs on, or
for the core's numpy and pillow the older version tests/test_install.py installs
first and runs the model core beside.
Raising a pin without the bound (or the reverse) fails here, not in a user's
environment with an older, untested release."""

import configparser
import os
import re

from test_install import PREINSTALLED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _name(requirement):
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins():
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==")
                pins[_name(name)] = version.strip()
    return pins


def _requirements():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")
    groups = {"install_requires": cfg["options"]["install_requires"]}
    groups.update(cfg["options.extras_require"])
    return {(group, line.strip()) for group, text in groups.items()
            for line in text.splitlines() if line.strip() and not line.strip().startswith("#")}


def test_every_lower_bound_is_the_pinned_tested_version():
    pins = _pins()
    found = _requirements()
    assert found
    for group, requirement in found:
        name = _name(requirement)
        assert name in pins, f"{group}: {requirement!r} has no pin in constraints.txt"
        match = re.fullmatch(r"[A-Za-z0-9_.\-]+>=([0-9][0-9a-z.]*)", requirement)
        assert match, f"{group}: {requirement!r} should be NAME>=VERSION"
        tested = PREINSTALLED.get(name) if group == "install_requires" else None
        assert match.group(1) in (pins[name], tested), (
            f"{group}: {requirement!r} but constraints.txt tests {name}=={pins[name]}"
            + (f" and tests/test_install.py {name}=={tested}" if tested else ""))
