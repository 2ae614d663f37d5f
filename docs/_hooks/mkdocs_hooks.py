"""MkDocs hooks (mkdocs.yml `hooks:`): make the README's links work on the site's Home page.

README.md links the tutorial sources as notebooks/NN_name.py and the executed copies'
folder as docs/notebooks/. Included into docs/index.md (include-markdown rewrites relative
links for the including page), they become ../notebooks/NN_name.py, outside docs/, and
notebooks/, a folder with no page. This hook publishes each notebooks/*.py beside its
executed copy in site/notebooks/, and points those links there and at the Tutorials page,
so that `mkdocs build --strict` can check every link instead of failing on them.
"""

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/_hooks/ is two below it
SOURCES = "notebooks"  # the jupytext sources, relative to ROOT, published under the same path
TUTORIALS = "tutorials.md"

# A Markdown link's target: ](target) or ](target#anchor), the target without spaces.
_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_files(files, config):
    for source in sorted((ROOT / SOURCES).glob("[0-9][0-9]_*.py")):
        files.append(
            File(
                f"{SOURCES}/{source.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def on_page_markdown(markdown, page, config, files):
    page_dir = posixpath.dirname(page.file.src_uri)

    def relink(match):
        target = match["target"]
        if "://" in target or target.startswith(("/", "mailto:")):
            return match[0]
        # The target relative to docs/: outside it when it starts with ../
        resolved = posixpath.normpath(posixpath.join(page_dir, target))
        if resolved.startswith(f"../{SOURCES}/"):
            new = resolved.removeprefix("../")  # published at the same path under site/
        elif target.endswith("/") and resolved == SOURCES:
            new = TUTORIALS  # the executed notebooks' folder: the page that lists them
        else:
            return match[0]
        return f"]({posixpath.relpath(new, page_dir or '.')}{match['anchor'] or ''})"

    return _LINK.sub(relink, markdown)
