"""Sphinx extension: ``literalinclude :diff:`` headers name repo-relative paths.

Sphinx writes the absolute paths of the build machine into the ``---``/``+++`` lines
of a diff, which leaks that path and makes builds differ between machines.
"""

from __future__ import annotations

import os
from difflib import unified_diff

from sphinx.application import Sphinx
from sphinx.directives.code import LiteralIncludeReader


def setup(app: Sphinx) -> dict[str, object]:
    def show_diff(self: LiteralIncludeReader, location=None) -> list[str]:
        new_lines = self.read_file(self.filename)
        old_filename = self.options["diff"]
        old_lines = self.read_file(old_filename)
        old_name = os.path.relpath(old_filename, app.srcdir)
        new_name = os.path.relpath(self.filename, app.srcdir)
        return list(unified_diff(old_lines, new_lines, old_name, new_name))

    LiteralIncludeReader.show_diff = show_diff
    return {"parallel_read_safe": True, "parallel_write_safe": True}
