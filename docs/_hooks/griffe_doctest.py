"""Griffe extension (mkdocs.yml, mkdocstrings `extensions:`): show doctest examples as code.

digitlab's docstrings are plain prose with the odd bare doctest (`>>> digitlab.load(...)`).
Markdown reads a line starting with `>` as a quotation, so `>>>` would render as a quote
three deep. This wraps each run of doctest lines (a `>>>` line up to the next blank line,
as doctest reads them) in a ```pycon fence, in every docstring, before it is rendered.
"""

import griffe


def fence_doctests(text: str) -> str:
    out: list[str] = []
    in_fence = False  # inside a fence the docstring wrote itself: leave it alone
    in_example = False
    indent = ""  # the example's own indentation, for its fence
    for line in text.split("\n"):
        stripped = line.lstrip()
        if in_example and not stripped:
            out.append(f"{indent}```")
            in_example = False
        elif not in_example and not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_example = True
        elif not in_example and stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        out.append(line)
    if in_example:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
